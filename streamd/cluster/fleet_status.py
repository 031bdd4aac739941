"""`streamd status --cluster`: ask every camera actor of the cluster how it does and where it runs."""

from __future__ import annotations

from dataclasses import dataclass

from streamd.cluster.ray_runtime import connect
from streamd.cluster.registry import camera_actor, fleet_camera_ids

STATUS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class FleetStatusRow:
    camera_id: str
    state: str
    fps: float
    frames_out: int
    restarts: int
    node_ip: str
    endpoint: str


def collect_fleet_status(address: str) -> list[FleetStatusRow]:
    ray = connect(address)
    rows = []
    for camera_id in fleet_camera_ids(ray):
        actor = camera_actor(ray, camera_id)
        try:
            placement, snapshot = ray.get([actor.placement.remote(), actor.snapshot.remote()], timeout=STATUS_TIMEOUT_S)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            rows.append(FleetStatusRow(camera_id, "unreachable", 0.0, 0, 0, "-", "-"))
            continue
        rows.append(FleetStatusRow(camera_id, snapshot.state, snapshot.fps, snapshot.frames_out, snapshot.restarts,
                                   placement["node_ip"], placement["endpoint"] or "-"))
    return rows


def format_fleet_status(rows: list[FleetStatusRow]) -> str:
    if not rows:
        return "no camera runs on this Ray cluster"
    header = ("CAMERA", "STATE", "FPS", "FRAMES", "RESTARTS", "NODE", "ENDPOINT")
    table = [header] + [(row.camera_id, row.state, f"{row.fps:.1f}", str(row.frames_out), str(row.restarts),
                         row.node_ip, row.endpoint) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)
