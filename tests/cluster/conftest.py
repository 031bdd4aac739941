"""The shared two-node Ray cluster of a cluster test module (see `cluster_fixtures`)."""

from __future__ import annotations

import pytest

from cluster_fixtures import local_cluster


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and one worker node, each with 1 CPU."""
    with local_cluster(head_cpus=1, worker_cpus=1) as cluster:
        yield cluster
