"""Importing Ray and connecting to a cluster: the only place that does either.

`--cluster auto` joins the cluster this machine is part of (`ray start` ran here, or RAY_ADDRESS is
set); `--cluster ray://HOST:PORT` connects through Ray Client; `--cluster HOST:PORT` joins as a
driver through the head node's GCS address; `--cluster local` starts a one-node Ray inside this
process (a quick way to run archive mode on one machine).
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from streamd.errors import StreamdError

logger = logging.getLogger(__name__)

INSTALL_HINT = "cluster mode needs Ray: pip install 'streamd[cluster]'"
#: Ray namespace of every actor streamd creates, so that other processes find them by name.
NAMESPACE = "streamd"
#: Object store of a `--cluster local` Ray: small, frames never travel through it.
LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024


class ClusterError(StreamdError):
    """The Ray cluster cannot be reached, or a cluster operation failed."""


def import_ray() -> ModuleType:
    """The `ray` module, or ClusterError with the one line that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None


def connect(address: str) -> ModuleType:
    """Connect this process to the cluster at `address` (auto, local or ray://HOST:PORT); returns `ray`."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    options = {"namespace": NAMESPACE, "logging_level": logging.WARNING, "log_to_driver": False}
    if address == "local":
        options.update(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        ray.init(**options)
        return ray
    if address != "auto" and not address.startswith("ray://") and ":" not in address:
        raise ClusterError(f"--cluster takes auto, local, ray://HOST:PORT or a head node's HOST:PORT, not {address!r}")
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:
        if address == "auto":
            raise ClusterError(
                "no Ray cluster found on this machine (start one with `ray start --head`, or give "
                f"--cluster ray://HOST:PORT or --cluster local): {exc}"
            ) from None
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def node_ip() -> str:
    """The IP address of the node this code runs on, as Ray sees it."""
    ray = import_ray()
    return ray.util.get_node_ip_address()
