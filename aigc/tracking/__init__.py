"""MLflow tracking: the logger, what a run records, and how a run ends.

Only this package, the entry points and ``aigc.serving.pyfunc`` (a run's model as an MLflow pyfunc
model) talk to MLflow; models log through
Lightning's ``self.log`` and callbacks through the logger's duck-typed
``log_image`` (the same signature as Lightning's ``WandbLogger.log_image``).
Tag names are in ``aigc.common.tags``. Nothing is re-exported here: importing the package stays free of
Lightning and MLflow (``aigc.run`` answers ``--help`` without them).

In three layers, each importing only from those below it (``tests/test_layers.py`` keeps it so):

- ``reports`` (the compare report: tables and plots over finished runs);
- ``run/``: a run while it trains: ``logger`` (Lightning's logger, extended), ``record`` (what it
  records), ``model`` (its MLflow model), ``lifecycle`` (how it ends), ``resume``, ``signals``
  (Ctrl-C never inside a write), ``sweep`` (a sweep's parent run);
- ``store/``: ``client`` (the one way to open a store: ``open_store``), ``spool`` (writes that
  never hold up training), ``liveness`` (heartbeats, reaping), ``checkpoints`` (a run's
  checkpoint artifacts), ``models`` (runs' MLflow models: model URIs, the registry).
"""
