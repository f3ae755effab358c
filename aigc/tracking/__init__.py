"""MLflow tracking: the logger, what a run records, how a run ends, and the store beneath it.

Only this package, the commands and ``aigc.serving`` (a run's model as an MLflow model) talk to
MLflow; models log through Lightning's ``self.log`` and callbacks through the logger's
duck-typed ``log_image`` (the same signature as Lightning's ``WandbLogger.log_image``). Tag
names are in ``aigc.common.tags``. Nothing is re-exported here: importing the package stays
free of Lightning and MLflow (``aigc.run`` answers ``--help`` without them).

In three layers (README's Layout table, enforced by ``tests/test_layers.py``):

- ``reports``: the compare report, tables and plots over finished runs;
- ``run/``: a run while it trains: ``tracker`` (what training says to the store, in order),
  ``logger`` (Lightning's logger, extended), ``record`` (what a run records), ``lifecycle`` (how
  it ends), ``resume``, ``signals`` (Ctrl-C never inside a write), ``sweep`` (a sweep's parent
  run), ``system_metrics``;
- ``store/``: ``client`` (the one way to open a store), ``writer`` (writes that never hold up
  training), ``journal`` (what the store did not take, and its replay), ``codec`` (a write as
  JSON), ``liveness`` (heartbeats, reaping), ``checkpoints`` (a run's checkpoint artifacts).
"""
