"""MLflow tracking: the logger, what a run records, and how a run ends.

Only this package (and the entry points) talk to MLflow; models log through
Lightning's ``self.log`` and callbacks through the logger's duck-typed
``log_image`` (the same signature as Lightning's ``WandbLogger.log_image``).
Tag names are in ``aigc.tags``.

In layers, each importing only from those below it (no cycle):

- reports: ``comparison`` (the compare report), ``sweep`` (a sweep's parent run);
- the run: ``lifecycle`` (how it ends), ``record`` (what it records), ``resume``,
  ``checkpoints``; ``logger`` (Lightning's logger, extended), ``spool`` (writes that never
  hold up training), ``signals`` (Ctrl-C never inside a write);
- the store: ``store`` (the one way to open one: ``open_store``), ``liveness`` (heartbeats, reaping).
"""

import logging

from aigc.tracking.lifecycle import tracked_run
from aigc.tracking.logger import MLflowLogger
from aigc.tracking.record import record_run
from aigc.tracking.signals import RunInterrupted
from aigc.tracking.store import TrackingUnreachable

# Creating a new SQLite store runs alembic migrations, which log a page of INFO lines.
logging.getLogger("alembic").setLevel(logging.WARNING)

__all__ = ["MLflowLogger", "RunInterrupted", "TrackingUnreachable", "record_run", "tracked_run"]
