"""Python's garbage collector while a command starts: paused, then what the start made frozen.

A command's imports make close to a million objects that live as long as it does (torch,
Lightning, MLflow and theirs). Each time the collector's oldest generation filled, it walked all
of them again, during the start and all through training. Paused while a command starts
(``collector_paused``, around ``aigc.jobs.console.entry_point``'s command), then frozen (``gc.freeze``: never
walked again) when its work starts (``started``), a smoke run ends in 0.70 of the time
(experiments/gc_pause.md).
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Until ``started`` (or the block's end), nothing is collected."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def started() -> None:
    """The libraries are imported and the work starts (a command's, a DDP worker's): freeze what
    exists, once per process, and collect what is made from now on. Every command calls it first
    thing in its Hydra main function, before it builds a job, so a sweep's jobs, each built after
    it, are collected as ever. What the imports left as garbage when frozen, about 3 MB, is kept."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
    gc.enable()
