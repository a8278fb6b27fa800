"""One local multi-node Ray cluster for every cluster test: its head started once, each test adding the worker
nodes it removes."""

import pytest

from tests.cluster.harness import LocalCluster


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    """A head of three CPUs and no worker yet."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), head_cpus=3, worker_cpus=[]) as cluster:
        yield cluster
