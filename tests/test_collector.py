"""The garbage collector around a command's start (aigc.common.collector)."""

import gc
import weakref

from aigc.common.collector import collector_paused, started


class Node:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self):
        self.itself = self


def test_a_sweeps_later_jobs_are_collected_after_the_first_job_started():
    with collector_paused():
        first_job = Node()
        started()  # the first job: what exists is frozen, and the collector runs again
        assert gc.isenabled()
    second_job = Node()
    dropped = weakref.ref(second_job)
    started()  # the second job of the same sweep: nothing is frozen again
    del second_job
    gc.collect()
    assert dropped() is None and first_job.itself is first_job
