"""Prometheus text exposition (format 0.0.4) of the service's counters, served over HTTP.

No client library: the format is a few lines per metric (`# HELP`, `# TYPE`, samples). The server is
`http.server.ThreadingHTTPServer` on a loopback address (`metrics.listen`), answering
`GET /metrics` (the exposition) and `GET /healthz` (200 when every camera is healthy, 503 otherwise,
with one line per unhealthy camera; see `streamd.service.health`); other paths go to an optional route
handler (the live view of `streamd.live`). `parse_metrics` reads the exposition back, for `streamd status`.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streamd.errors import StreamdError
from streamd.service.health import PROBLEMS, CameraHealth
from streamd.service.supervisor import CameraSnapshot, CameraState

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_METRICS_URL = "http://127.0.0.1:9108/metrics"
#: Label values exported as 0 before they first happen, so that rate() and alerts see them from the start.
DROP_REASONS = ("queue_full", "processing_error")
ERROR_STAGES = ("detector", "anonymizer", "sealing")


@dataclass(frozen=True)
class ServiceSnapshot:
    """Process-level facts plus one snapshot per camera."""

    version: str
    uptime_s: float
    start_time_s: float
    healthy: bool
    config_reloads: dict[str, int]
    cameras: Sequence[CameraSnapshot]
    health: Mapping[str, CameraHealth] = field(default_factory=dict)
    max_drop_share: float = 1.0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        label_text = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
        self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")


# (metric name, type, help, how to read it from a camera snapshot)
_CAMERA_VALUES: tuple[tuple[str, str, str, Callable[[CameraSnapshot], float]], ...] = (
    ("streamd_camera_up", "gauge", "1 while frames flow from the camera's source.", lambda c: float(c.up)),
    ("streamd_camera_healthy", "gauge", "0 when the camera is down, drops too many frames or is wedged (docs/service.md).",
     lambda c: float(c.healthy)),
    ("streamd_camera_fps", "gauge", "Frames put out per second over the last 5 s.", lambda c: c.fps),
    ("streamd_frames_in_total", "counter", "Frames decoded from the source.", lambda c: c.frames_in),
    ("streamd_frames_out_total", "counter", "Frames handed to the outputs.", lambda c: c.frames_out),
    ("streamd_frames_masked_total", "counter", "Frames blanked because processing failed.", lambda c: c.frames_masked),
    ("streamd_faces_total", "counter", "Faces masked, counted once per frame.", lambda c: c.faces),
    ("streamd_faces_predicted_total", "counter", "Faces masked on a predicted box (detector missed).",
     lambda c: c.faces_predicted),
    ("streamd_tracks_started_total", "counter", "Face tracks started.", lambda c: c.tracks_started),
    ("streamd_reconnects_total", "counter", "Times a lost live source came back.", lambda c: c.counters["reconnects"]),
    ("streamd_disconnects_total", "counter", "Times a working live source was lost.", lambda c: c.counters["disconnects"]),
    ("streamd_connect_failures_total", "counter", "Connection attempts that ended before a first frame.",
     lambda c: c.counters["connect_failures"]),
    ("streamd_decode_errors_total", "counter", "Packets the decoder rejected or frames it concealed.",
     lambda c: c.counters["decode_errors"]),
    ("streamd_published_frames_total", "counter", "Frames sent on ZeroMQ.", lambda c: c.counters["published"]),
    ("streamd_publish_drops_total", "counter", "Frames refused at the ZeroMQ high-water mark.",
     lambda c: c.counters["publish_dropped"]),
    ("streamd_publish_event_drops_total", "counter", "Events dropped from a full ZeroMQ event queue.",
     lambda c: c.counters["publish_events_dropped"]),
    ("streamd_camera_restarts_total", "counter", "Times the camera's pipeline was restarted after a failure.",
     lambda c: c.restarts),
    ("streamd_camera_stalls_total", "counter", "Times the camera was restarted because it put out no frame.",
     lambda c: c.stalls),
)


def render_metrics(snapshot: ServiceSnapshot) -> str:
    """The Prometheus text exposition of `snapshot`."""
    out = _Exposition()
    out.family("streamd_up", "gauge", "1 while the streamd process runs.")
    out.sample("streamd_up", {}, 1)
    out.family("streamd_info", "gauge", "Version of the running streamd.")
    out.sample("streamd_info", {"version": snapshot.version}, 1)
    out.family("streamd_uptime_seconds", "gauge", "Seconds since the process started.")
    out.sample("streamd_uptime_seconds", {}, round(snapshot.uptime_s, 3))
    out.family("streamd_start_time_seconds", "gauge", "Unix time the process started.")
    out.sample("streamd_start_time_seconds", {}, round(snapshot.start_time_s, 3))
    out.family("streamd_healthy", "gauge", "1 while the systemd watchdog is fed (no camera wedged).")
    out.sample("streamd_healthy", {}, float(snapshot.healthy))
    out.family("streamd_config_reloads_total", "counter", "Config reloads (SIGHUP) by result.")
    for result, count in sorted(snapshot.config_reloads.items()):
        out.sample("streamd_config_reloads_total", {"result": result}, count)
    out.family("streamd_cameras", "gauge", "Cameras configured.")
    out.sample("streamd_cameras", {}, len(snapshot.cameras))
    out.family("streamd_camera_state", "gauge", "1 for the camera's current state.")
    for camera in snapshot.cameras:
        for state in CameraState.ALL:
            out.sample("streamd_camera_state", {"camera": camera.camera_id, "state": state},
                       float(camera.state == state))
    out.family("streamd_camera_info", "gauge", "Source type of each camera.")
    for camera in snapshot.cameras:
        out.sample("streamd_camera_info", {"camera": camera.camera_id, "source": camera.source_type}, 1)
    for name, kind, help_text, read in _CAMERA_VALUES:
        out.family(name, kind, help_text)
        for camera in snapshot.cameras:
            out.sample(name, {"camera": camera.camera_id}, read(camera))
    out.family("streamd_drops_total", "counter", "Frames dropped inside the pipeline, by reason.")
    for camera in snapshot.cameras:
        for reason, count in sorted({**dict.fromkeys(DROP_REASONS, 0), **camera.drops}.items()):
            out.sample("streamd_drops_total", {"camera": camera.camera_id, "reason": reason}, count)
    out.family("streamd_model_errors_total", "counter", "Frames on which a model or sealing step failed, by stage.")
    for camera in snapshot.cameras:
        for stage, count in sorted({**dict.fromkeys(ERROR_STAGES, 0), **camera.errors}.items()):
            out.sample("streamd_model_errors_total", {"camera": camera.camera_id, "stage": stage}, count)
    out.family("streamd_health_max_drop_share", "gauge", "Drop share above which a camera is unhealthy (health.max_drop_share).")
    out.sample("streamd_health_max_drop_share", {}, snapshot.max_drop_share)
    out.family("streamd_camera_drop_share", "gauge", "Share of decoded frames dropped over the health window.")
    for camera in snapshot.cameras:
        entry = snapshot.health.get(camera.camera_id)
        out.sample("streamd_camera_drop_share", {"camera": camera.camera_id},
                   round(entry.drop_share, 6) if entry is not None else 0.0)
    out.family("streamd_camera_problem", "gauge", "1 for each problem that makes the camera unhealthy.")
    for camera in snapshot.cameras:
        entry = snapshot.health.get(camera.camera_id)
        for problem in PROBLEMS:
            out.sample("streamd_camera_problem", {"camera": camera.camera_id, "problem": problem},
                       float(entry is not None and problem in entry.problems))
    out.family("streamd_frame_latency_seconds", "histogram", "Source read to output, per frame.")
    for camera in snapshot.cameras:
        labels = {"camera": camera.camera_id}
        histogram = camera.latency
        for bound, count in zip(histogram.bounds_s, histogram.cumulative_counts):
            out.sample("streamd_frame_latency_seconds_bucket", {**labels, "le": _number(bound)}, count)
        out.sample("streamd_frame_latency_seconds_bucket", {**labels, "le": "+Inf"}, histogram.count)
        out.sample("streamd_frame_latency_seconds_sum", labels, round(histogram.sum_s, 6))
        out.sample("streamd_frame_latency_seconds_count", labels, histogram.count)
    return "\n".join(out.lines) + "\n"


# ---------------------------------------------------------------- reading it back
_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def parse_metrics(text: str) -> list[Sample]:
    """(name, labels, value) of every sample in an exposition; raises StreamdError on a bad line."""
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE_LINE.match(line.strip())
        if match is None:
            raise StreamdError(f"metrics line {number} is not a Prometheus sample: {line[:80]!r}")
        name, label_text, value_text = match.groups()
        labels = {key: value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for key, value in _LABEL.findall(label_text or "")}
        samples.append((name, labels, float(value_text)))
    return samples


def fetch_metrics(url: str, timeout_s: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode("utf-8")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StreamdError(f"cannot read metrics from {url}: {reason} (is `streamd run` running?)") from None


@dataclass(frozen=True)
class CameraStatusRow:
    camera_id: str
    state: str
    fps: float
    frames_out: int
    drops: int
    reconnects: int
    restarts: int
    faces: int = 0
    drop_share: float = 0.0
    problems: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.problems


def camera_status_rows(samples: Iterable[Sample]) -> list[CameraStatusRow]:
    """One row per camera from parsed metrics; drops include publish drops."""
    values: dict[str, dict[str, float]] = {}
    states: dict[str, str] = {}
    problems: dict[str, list[str]] = {}
    for name, labels, value in samples:
        camera_id = labels.get("camera")
        if camera_id is None:
            continue
        per_camera = values.setdefault(camera_id, {})
        if name == "streamd_camera_state" and value == 1:
            states[camera_id] = labels["state"]
        elif name == "streamd_camera_problem":
            if value == 1:
                problems.setdefault(camera_id, []).append(labels.get("problem", "unknown"))
        elif name in ("streamd_drops_total", "streamd_publish_drops_total"):
            per_camera["drops"] = per_camera.get("drops", 0.0) + value
        else:
            per_camera[name] = value
    return [
        CameraStatusRow(
            camera_id=camera_id,
            state=states.get(camera_id, "unknown"),
            fps=per_camera.get("streamd_camera_fps", 0.0),
            frames_out=int(per_camera.get("streamd_frames_out_total", 0)),
            drops=int(per_camera.get("drops", 0)),
            reconnects=int(per_camera.get("streamd_reconnects_total", 0)),
            restarts=int(per_camera.get("streamd_camera_restarts_total", 0)),
            faces=int(per_camera.get("streamd_faces_total", 0)),
            drop_share=per_camera.get("streamd_camera_drop_share", 0.0),
            problems=tuple(problems.get(camera_id, ())),
        )
        for camera_id, per_camera in values.items()
    ]


def format_status_table(rows: Sequence[CameraStatusRow]) -> str:
    header = ("CAMERA", "STATE", "HEALTH", "FPS", "FRAMES", "FACES", "DROPS", "DROP%", "RECONNECTS", "RESTARTS")
    table = [header] + [
        (row.camera_id, row.state, "ok" if row.healthy else ",".join(row.problems), f"{row.fps:.1f}",
         str(row.frames_out), str(row.faces), str(row.drops), f"{100 * row.drop_share:.1f}", str(row.reconnects),
         str(row.restarts))
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


# ---------------------------------------------------------------- serving
class _Ipv6HttpServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


#: Answers a GET for a path other than /metrics and /healthz; False when it is not one of its paths.
RouteHandler = Callable[[BaseHTTPRequestHandler, str], bool]


class MetricsServer:
    """Serves `render()` at /metrics, `health()` (ok, text) at /healthz and `routes` elsewhere, from threads."""

    def __init__(self, listen: str, render: Callable[[], str], health: Callable[[], tuple[bool, str]],
                 routes: RouteHandler | None = None) -> None:
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, CONTENT_TYPE, render().encode())
                elif path == "/healthz":
                    ok, text = health()
                    self._answer(200 if ok else 503, "text/plain; charset=utf-8", text.encode())
                elif routes is None or not routes(self, path):
                    self._answer(404, "text/plain", b"not found: try /metrics or /healthz\n")

            def _answer(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
                logger.debug("metrics request: " + format, *args)

        server_class = _Ipv6HttpServer if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_class((host, int(port_text)), Handler)
        except OSError as exc:
            raise StreamdError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        url_host = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.base_url = f"http://{url_host}:{bound_port}"
        self.url = f"{self.base_url}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("metrics on %s", self.url)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
