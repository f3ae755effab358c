"""How the suite runs in parallel (``make test``: ``pytest -n 2 --dist loadgroup``)."""

import pytest


@pytest.mark.xdist_group("kept_together")
def test_loadgroup_keeps_an_xdist_group_on_one_worker(request):
    """A module's shared run is made once, and tests that must not overlap stay apart, only while
    xdist can tag each grouped test's id with its group, which is what its scheduler reads. With
    pytest 9.2 the tag is dropped and nothing says so (pytest-xdist#1386): every worker then made
    each module's run again."""
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers
        pytest.skip("runs under pytest -n 2 --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@kept_together"), (
        "--dist loadgroup ignores xdist_group (pytest-xdist#1386): install pytest<9.2, as pyproject.toml asks"
    )
