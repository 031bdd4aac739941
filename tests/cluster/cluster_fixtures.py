"""Local multi-node Ray clusters for the cluster tests, started by the tests themselves.

Each test module starts its own small cluster (1 CPU per node, 80 MB object
stores, no dashboard) and shuts it down at its end. Nodes are marked dead after about 1.5 s of missed
health checks (the default is about 15 s), as docs/scaling.md recommends for camera fleets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

OBJECT_STORE_BYTES = 80 * 1024 * 1024
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                   "health_check_initial_delay_ms": 0}


@contextlib.contextmanager
def local_cluster(head_cpus: int, worker_cpus: int) -> Iterator:
    """A head node and one worker node with these CPUs; this process is connected as a driver."""
    ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'streamd[cluster]'")
    from ray.cluster_utils import Cluster

    from streamd.cluster.ray_runtime import NAMESPACE

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head_cpus, "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False,
        "_system_config": FAST_NODE_DEATH,
    })
    try:
        cluster.add_node(num_cpus=worker_cpus, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
