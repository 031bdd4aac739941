"""The fleet's Prometheus exposition: the single-host metrics of every camera, plus where each runs.

The driver of `streamd run --cluster` serves it at `metrics.listen`. Every camera's series carry the
`camera` label as on one host; `streamd_camera_node_info{camera,node_id,node_ip}` says which node
runs it, so per-node sums are one `* on(camera) group_left(node_ip)` join away (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamd.service.metrics import ServiceSnapshot, render_metrics


def render_fleet_metrics(snapshot: ServiceSnapshot, placements: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [render_metrics(snapshot).rstrip("\n")]
    lines.append("# HELP streamd_camera_node_info The Ray node that runs the camera (1 per camera).")
    lines.append("# TYPE streamd_camera_node_info gauge")
    for camera_id, placement in sorted(placements.items()):
        lines.append(f'streamd_camera_node_info{{camera="{camera_id}",node_id="{placement["node_id"]}",'
                     f'node_ip="{placement["node_ip"]}"}} 1')
    lines.append("# HELP streamd_camera_moves_total Times the camera came back on a node after losing its process.")
    lines.append("# TYPE streamd_camera_moves_total counter")
    for camera_id, placement in sorted(placements.items()):
        lines.append(f'streamd_camera_moves_total{{camera="{camera_id}"}} {int(placement.get("moves", 0))}')
    return "\n".join(lines) + "\n"
