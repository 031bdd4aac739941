"""Where each camera of a fleet runs, found through Ray's named actors (no registry service of ours).

Every camera actor is named `camera:<id>` in the `streamd` namespace. Ray keeps the name through
restarts, on whichever node the actor comes back, so `resolve_endpoint` asks the actor itself for
the ZeroMQ address it bound on its node.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any

from streamd.cluster.ray_runtime import NAMESPACE, ClusterError

logger = logging.getLogger(__name__)

ACTOR_PREFIX = "camera:"
#: How long a lookup waits for a camera that is (re)starting before giving up.
RESOLVE_TIMEOUT_S = 20.0


def actor_name(camera_id: str) -> str:
    return f"{ACTOR_PREFIX}{camera_id}"


def camera_actor(ray: ModuleType, camera_id: str) -> Any:
    try:
        return ray.get_actor(actor_name(camera_id), namespace=NAMESPACE)
    except ValueError:
        raise ClusterError(f"no camera {camera_id!r} runs on this Ray cluster (is `streamd run --cluster` up?)") from None


def fleet_camera_ids(ray: ModuleType) -> list[str]:
    """Ids of the cameras whose actors exist in the cluster now."""
    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(entry["name"][len(ACTOR_PREFIX):] for entry in names
                  if entry["namespace"] == NAMESPACE and entry["name"].startswith(ACTOR_PREFIX))


def resolve_endpoint(ray: ModuleType, camera_id: str, timeout_s: float = RESOLVE_TIMEOUT_S) -> str:
    """The tcp:// address the camera's publisher bound on its node; waits while the camera starts."""
    actor = camera_actor(ray, camera_id)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            placement = ray.get(actor.placement.remote(), timeout=max(0.1, deadline - time.monotonic()))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            placement = {}
            logger.debug("camera %s not answering yet: %s", camera_id, exc)
        if placement.get("endpoint"):
            return placement["endpoint"]
        if time.monotonic() >= deadline:
            raise ClusterError(f"camera {camera_id!r} has no ZeroMQ output bound (none configured, or still "
                               f"starting after {timeout_s:.0f} s)")
        time.sleep(0.2)
