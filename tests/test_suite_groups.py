"""How `make test` spreads this suite over its two pytest-xdist workers (tests/conftest.py): each
file's tests stay on one worker, so that its module fixtures (the trained digits model, a family's
built models) are made once."""

from pathlib import Path


def test_a_test_runs_in_its_files_xdist_group(request):
    """conftest's pytest_collection_modifyitems gives every test its file's xdist_group, and on a
    `--dist loadgroup` worker pytest-xdist appends it to the node id, which is what its scheduler
    groups by. With pytest 9.2 and pytest-xdist 3.8 the suffix is missing (pytest-dev/pytest-xdist#1386):
    the tests are then spread one by one and both workers build each file's fixtures (the trained
    digits model twice, about 140 s). pyproject.toml pins pytest below 9.2 for that reason."""
    groups = [mark.args[0] for mark in request.node.iter_markers("xdist_group")]
    assert groups == [Path(__file__).name]
    if getattr(request.config.option, "loadgroup", False):  # on a worker of `make test`'s run
        assert request.node.nodeid.endswith(f"@{Path(__file__).name}"), (
            f"pytest-xdist did not group {request.node.nodeid} by its xdist_group: this pytest and"
            " pytest-xdist do not work together for --dist loadgroup (pytest-dev/pytest-xdist#1386)"
        )
