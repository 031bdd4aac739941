"""Whether each camera is healthy, for /healthz, the metrics and `streamd status`.

A camera is unhealthy when it is wedged (its pipeline would not stop; see `streamd.service.supervisor`),
when it has not been up for `health.down_grace_s` (starting, reconnecting to its source, waiting to
restart, stopped, or failed for good; a file camera that reached its end is fine), or when it dropped
more than `health.max_drop_share` of the frames it decoded over the last `health.window_s`
(pipeline drops and frames the ZeroMQ output refused), once that window holds `health.min_frames`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamd.config import HealthConfig
from streamd.service.supervisor import CameraSnapshot, CameraState

#: Problem names (the `problem` label of `streamd_camera_problem`).
PROBLEMS = ("down", "drops", "wedged")
#: States in which a camera counts as working.
WORKING_STATES = (CameraState.UP, CameraState.FINISHED)


@dataclass(frozen=True)
class CameraHealth:
    camera_id: str
    problems: tuple[str, ...]
    drop_share: float
    reason: str  # one line, empty when healthy

    @property
    def healthy(self) -> bool:
        return not self.problems


def frames_lost(camera: CameraSnapshot) -> int:
    """Frames decoded but never delivered: pipeline drops plus ZeroMQ refusals."""
    return sum(camera.drops.values()) + camera.counters.get("publish_dropped", 0)


def describe_state(state: str) -> str:
    return "reconnecting to its source" if state == CameraState.DOWN else state


class HealthMonitor:
    """Keeps each camera's recent counts and judges it once per service tick (`assess`)."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self._history: dict[str, collections.deque[tuple[float, int, int]]] = {}
        self._not_working_since: dict[str, float] = {}
        self._lock = threading.Lock()
        self._latest: dict[str, CameraHealth] = {}

    def _drop_share(self, camera: CameraSnapshot, now: float) -> float:
        history = self._history.setdefault(camera.camera_id, collections.deque())
        if history and camera.frames_in < history[-1][1]:
            history.clear()  # a new worker (the camera was replaced at a reload): its counts start again
        history.append((now, camera.frames_in, frames_lost(camera)))
        while len(history) > 2 and now - history[1][0] >= self.config.window_s:
            history.popleft()
        _, first_in, first_lost = history[0]
        decoded = camera.frames_in - first_in
        lost = frames_lost(camera) - first_lost
        if decoded < self.config.min_frames:
            return 0.0
        return min(1.0, lost / decoded)

    def _judge(self, camera: CameraSnapshot, wedged: bool, now: float) -> CameraHealth:
        problems: list[str] = []
        reasons: list[str] = []
        if camera.state in WORKING_STATES:
            self._not_working_since.pop(camera.camera_id, None)
        else:
            since = self._not_working_since.setdefault(camera.camera_id, now)
            if now - since >= self.config.down_grace_s:
                problems.append("down")
                reason = f"{describe_state(camera.state)} for {now - since:.0f} s"
                if camera.last_error:
                    reason += f" (last error: {camera.last_error})"
                reasons.append(reason)
        share = self._drop_share(camera, now)
        if share > self.config.max_drop_share:
            problems.append("drops")
            reasons.append(f"dropped {share:.0%} of its frames over the last {self.config.window_s:g} s "
                           f"(limit {self.config.max_drop_share:.0%})")
        if wedged:
            problems.append("wedged")
            reasons.append("wedged: its pipeline does not stop")
        return CameraHealth(camera.camera_id, tuple(problems), share, "; ".join(reasons))

    def assess(self, cameras: Sequence[CameraSnapshot], wedged: Mapping[str, bool], now: float) -> dict[str, CameraHealth]:
        """Judge every camera at monotonic time `now`; the result is also kept for `latest`."""
        results = {camera.camera_id: self._judge(camera, wedged.get(camera.camera_id, False), now)
                   for camera in cameras}
        for gone in set(self._history) - set(results):
            self._history.pop(gone, None)
            self._not_working_since.pop(gone, None)
        with self._lock:
            self._latest = results
        return results

    def latest(self) -> dict[str, CameraHealth]:
        with self._lock:
            return dict(self._latest)


def health_summary(health: Mapping[str, CameraHealth], watchdog_fed: bool) -> tuple[bool, str]:
    """(healthy, text) for /healthz: one line per unhealthy camera."""
    lines = [f"{camera_id}: {entry.reason}" for camera_id, entry in sorted(health.items()) if not entry.healthy]
    if not watchdog_fed:
        lines.append("service: a camera is wedged; the systemd watchdog is not fed")
    if not lines:
        return True, "ok\n"
    return False, "unhealthy\n" + "".join(line + "\n" for line in lines)
