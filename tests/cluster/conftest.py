"""One local multi-node Ray cluster for every cluster test: its head started once, each test adding the worker
nodes it removes."""

import pytest

from tests.cluster.harness import LocalCluster

# Ray gives a new node 30 s to register (hard-coded in Ray 2.60); a fresh clone's first start, its files not yet in
# the page cache, once took longer. Such a start is tried once more; any other failure fails at once.
SLOW_START = "The current node timed out during startup"


def _started(root) -> LocalCluster:
    """A head of three CPUs and no worker yet, up."""
    return LocalCluster(root, head_cpus=3, worker_cpus=[]).__enter__()


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    """A head of three CPUs and no worker yet."""
    try:
        started = _started(tmp_path_factory.mktemp("cluster"))
    except RuntimeError as exc:  # a failed start stops its own nodes
        if SLOW_START not in str(exc):
            raise
        started = _started(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.__exit__()
