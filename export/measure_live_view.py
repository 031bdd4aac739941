"""Measure the live view in headless Chromium: time to the first frame after opening the page, and the
latency of MJPEG and HLS, from frame numbers burned into the source to the browser showing them.

    python -m export.measure_live_view [--seconds 20] [--out docs/results/live-view.json]
                                       [--screenshot docs/images/live-page.png]

A 640x360 clip (a face photo, and the frame number as 12 black or white blocks) loops in real time
through `streamd run`'s service (blur, the `fast` profile) with a live view and a ZeroMQ output. A
ZeroMQ subscriber notes when each numbered frame left the pipeline; a probe in the page notes when the
browser showed it (HLS: `requestVideoFrameCallback`'s expected display time; MJPEG: the <img> read
every 10 ms). Latency = shown - published, per frame, on one clock (loopback, same machine). The
pipeline's own latency (source read to output) is reported beside it from the metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import zmq

from export.headless_chromium import PAGE_STATE_JS, HeadlessChromium
from streamd import __version__
from streamd.config import StreamdConfig
from streamd.protocol import decode_frame_message
from streamd.sample_faces import astronaut_bgr
from streamd.service.daemon import StreamService

logger = logging.getLogger("measure_live_view")

WIDTH, HEIGHT, FPS = 640, 360, 25
BITS, BLOCK, STEP, CODE_X, CODE_Y = 12, 28, 34, 8, 310
TARGETS_S = {"first_frame": 5.0, "hls_latency": 4.0, "mjpeg_latency": 1.0}


# ---------------------------------------------------------------- the numbered clip
def numbered_frame(backdrop: np.ndarray, number: int) -> np.ndarray:
    frame = backdrop.copy()
    for bit in range(BITS):
        x = CODE_X + bit * STEP
        frame[CODE_Y:CODE_Y + BLOCK, x:x + BLOCK] = 255 if number >> bit & 1 else 0
    return frame


def read_number(bgr: np.ndarray) -> int | None:
    """The burned-in frame number, or None when a block is neither black nor white (a blend)."""
    number = 0
    for bit in range(BITS):
        x = CODE_X + bit * STEP
        level = float(bgr[CODE_Y + 8:CODE_Y + BLOCK - 8, x + 8:x + BLOCK - 8].mean())
        if 60 < level < 195:
            return None
        number |= (level >= 128) << bit
    return number


def write_numbered_clip(path: Path, seconds: float) -> Path:
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    backdrop = np.stack([(columns // 3) % 200, (rows // 2) % 180, ((rows + columns) // 4) % 160], -1).astype(np.uint8)
    backdrop[CODE_Y - 6:CODE_Y + BLOCK + 6, :CODE_X + BITS * STEP] = 128
    backdrop[20:260, 380:620] = cv2.resize(astronaut_bgr(), (240, 240), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(FPS), "bf": "0", "crf": "18"}
        for number in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(numbered_frame(backdrop, number), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# ---------------------------------------------------------------- when frames left the pipeline
class PublishedTimes:
    """Subscribes to the camera's ZeroMQ output and notes the first time each number was published."""

    def __init__(self, endpoint: str) -> None:
        self.first_seen: dict[int, float] = {}
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"frame.")
        self._socket.setsockopt(zmq.RCVHWM, 1000)
        self._socket.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(100):
                continue
            parts = self._socket.recv_multipart()
            arrived = time.time()
            _, bgr, _ = decode_frame_message(parts)
            number = read_number(bgr)
            if number is not None:
                self.first_seen.setdefault(number, arrived)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close(linger=0)
        self._context.term()


# ---------------------------------------------------------------- when the browser showed them
PROBE_JS = f"""(() => {{
  const BITS = {BITS}, BLOCK = {BLOCK}, STEP = {STEP}, X = {CODE_X}, Y = {CODE_Y}, W = {WIDTH};
  window.__shown = {{hls: {{}}, mjpeg: {{}}}};
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', {{willReadFrequently: true}});
  function number(element, width, height) {{
    canvas.width = width; canvas.height = height;
    context.drawImage(element, 0, 0, width, height);
    const scale = width / W;
    let value = 0;
    for (let bit = 0; bit < BITS; bit++) {{
      const x = Math.round((X + bit * STEP + BLOCK / 2) * scale), y = Math.round((Y + BLOCK / 2) * scale);
      const d = context.getImageData(x - 2, y - 2, 4, 4).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
      const level = sum / (d.length / 4) / 3;
      if (level > 60 && level < 195) return null;
      if (level >= 128) value |= 1 << bit;
    }}
    return value;
  }}
  const video = document.querySelector('.view.hls video');
  const onFrame = (now, meta) => {{
    const value = number(video, video.videoWidth, video.videoHeight);
    const shown = performance.timeOrigin + (meta.expectedDisplayTime || now);
    if (value !== null && !(value in window.__shown.hls)) window.__shown.hls[value] = shown;
    video.requestVideoFrameCallback(onFrame);
  }};
  if (video) video.requestVideoFrameCallback(onFrame);
  const img = document.querySelector('.view.mjpeg img');
  setInterval(() => {{
    if (!img || !img.naturalWidth) return;
    const value = number(img, img.naturalWidth, img.naturalHeight);
    if (value !== null && !(value in window.__shown.mjpeg)) window.__shown.mjpeg[value] = Date.now();
  }}, 10);
  return true;
}})()"""


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"frames": 0}
    array = np.array(values)
    return {"frames": len(values), "median_s": round(float(np.median(array)), 3),
            "p95_s": round(float(np.percentile(array, 95)), 3), "max_s": round(float(array.max()), 3),
            "min_s": round(float(array.min()), 3)}


def wait_first_frames(browser: HeadlessChromium, opened: float, timeout_s: float) -> dict[str, Any]:
    """Seconds from navigation to each view's first frame (as polled here and as the page measured it)."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(seen) < 2:
        for view in browser.evaluate(PAGE_STATE_JS)["views"]:
            if view["firstFrameMs"] is not None and view["kind"] not in seen:
                seen[view["kind"]] = {"seen_by_poll_s": round(time.time() - opened, 3),
                                      "page_reported_s": round(view["firstFrameMs"] / 1000.0, 3)}
        time.sleep(0.05)
    return seen


def latency_of(shown_ms: dict[str, float], published: dict[int, float]) -> list[float]:
    return [shown / 1000.0 - published[int(number)] for number, shown in shown_ms.items()
            if int(number) in published]


def run_service(config: StreamdConfig) -> tuple[StreamService, threading.Thread]:
    service = StreamService(config, environ={})
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    if not service.ready.wait(60):
        raise RuntimeError("the service did not get ready within 60 s")
    return service, thread


def measure(seconds: float, screenshot: Path | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="streamd-live-bench-"))
    clip = write_numbered_clip(folder / "numbered.mp4", seconds=max(40.0, seconds + 25.0))
    with zmq.Context() as probe_context, probe_context.socket(zmq.PUB) as probe:
        zmq_port = probe.bind_to_random_port("tcp://127.0.0.1")
    with zmq.Context() as probe_context, probe_context.socket(zmq.PUB) as probe:
        http_port = probe.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    config = StreamdConfig.model_validate({
        "metrics": {"listen": f"127.0.0.1:{http_port}"},
        "cameras": [{
            "id": "lobby",
            "source": {"type": "file", "path": str(clip), "realtime": True, "loop": True},
            "detector": {"type": "centerface", "profile": "fast", "input_width": WIDTH, "input_height": HEIGHT},
            "outputs": {"zmq": {"endpoint": endpoint, "send_hwm": 1000}, "live": {}},
        }],
    })
    service, thread = run_service(config)
    published = PublishedTimes(endpoint)
    base = f"http://127.0.0.1:{http_port}"
    results: dict[str, Any] = {}
    try:
        with HeadlessChromium(window_wh=(1100, 640)) as browser:
            opened = time.time()
            browser.navigate(base + "/")
            results["first_frame_cold"] = wait_first_frames(browser, opened, timeout_s=30)
            logger.info("first frames (HLS encoder not yet running): %s", results["first_frame_cold"])
            browser.evaluate(PROBE_JS)
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(min(5.0, seconds - (time.monotonic() - started)))
                logger.info("measuring latency: %.0f of %.0f s", time.monotonic() - started, seconds)
            shown = browser.evaluate("window.__shown")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                browser.screenshot(screenshot)
            opened = time.time()
            browser.navigate(base + "/")
            results["first_frame_warm"] = wait_first_frames(browser, opened, timeout_s=30)
            logger.info("first frames (HLS encoder running): %s", results["first_frame_warm"])
        snapshot = service.snapshot().cameras[0]
    finally:
        published.close()
        service.request_stop()
        thread.join(30)
    results["hls_latency"] = summary(latency_of(shown["hls"], published.first_seen))
    results["mjpeg_latency"] = summary(latency_of(shown["mjpeg"], published.first_seen))
    histogram = snapshot.latency
    results["pipeline_latency_mean_s"] = round(histogram.sum_s / histogram.count, 3) if histogram.count else None
    results["published_frames"] = len(published.first_seen)
    return results


def verdict(results: dict[str, Any]) -> dict[str, bool]:
    first = max([view["seen_by_poll_s"] for view in results["first_frame_cold"].values()] or [float("inf")])
    return {
        "first_frame_within_5s": len(results["first_frame_cold"]) == 2 and first <= TARGETS_S["first_frame"],
        "hls_latency_p95_within_4s": results["hls_latency"].get("p95_s", float("inf")) <= TARGETS_S["hls_latency"],
        "mjpeg_latency_p95_within_1s": results["mjpeg_latency"].get("p95_s", float("inf")) <= TARGETS_S["mjpeg_latency"],
    }


SECTION_TITLE = "## Live view in a browser"


def live_view_markdown(report: dict[str, Any]) -> str:
    """The docs/results.md section for a live view report (also used by export/make_results.py)."""
    cold, warm = report["first_frame_cold"], report["first_frame_warm"]
    hls, mjpeg = report["hls_latency"], report["mjpeg_latency"]

    def first(view: dict[str, Any], kind: str) -> str:
        return f"{view[kind]['seen_by_poll_s']:.2f} s" if kind in view else "not shown"

    def met(key: str) -> str:
        return "met" if report["met"][key] else "NOT met"

    lines = [
        SECTION_TITLE,
        "",
        f"`python -m export.measure_live_view` (headless Chromium, {report['clip']}; {report['machine']}, "
        f"load average {report['load_average_1m_at_end']} at the end). Latency is from the frame leaving the "
        "pipeline (its ZeroMQ publication) to the browser showing it, per frame, from frame numbers burned into "
        "the source; the pipeline's own latency (source read to output) comes on top.",
        "",
        "| measure | MJPEG | HLS | target |",
        "|---|---|---|---|",
        f"| first frame after opening the page (HLS encoder idle) | {first(cold, 'mjpeg')} | {first(cold, 'hls')} | "
        f"5 s: {met('first_frame_within_5s')} |",
        f"| first frame after opening the page (HLS encoder running) | {first(warm, 'mjpeg')} | {first(warm, 'hls')} | |",
        f"| latency median / p95 / max | {mjpeg.get('median_s', 0):.2f} / {mjpeg.get('p95_s', 0):.2f} / "
        f"{mjpeg.get('max_s', 0):.2f} s ({mjpeg['frames']} frames) | {hls.get('median_s', 0):.2f} / "
        f"{hls.get('p95_s', 0):.2f} / {hls.get('max_s', 0):.2f} s ({hls['frames']} frames) | MJPEG 1 s: "
        f"{met('mjpeg_latency_p95_within_1s')}; HLS 4 s: {met('hls_latency_p95_within_4s')} |",
        f"| pipeline latency (mean, source read to output) | {report['pipeline_latency_mean_s']:.2f} s | same | |",
        "",
        "![the live page](images/live-page.png)",
        "",
    ]
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """`document` with its live view section replaced by `section` (appended when it has none)."""
    start = document.find(SECTION_TITLE)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section
    end = document.find("\n## ", start + len(SECTION_TITLE))
    return document[:start] + section + (document[end + 1:] if end >= 0 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to measure latency")
    parser.add_argument("--out", type=Path, default=Path("docs/results/live-view.json"))
    parser.add_argument("--screenshot", type=Path, default=Path("docs/images/live-page.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("streamd").setLevel(logging.WARNING)
    results = measure(args.seconds, args.screenshot)
    report = {"streamd": __version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "load_average_1m_at_end": round(os.getloadavg()[0], 2),
              "clip": f"{WIDTH}x{HEIGHT} at {FPS} fps, blur, profile fast, loopback", "targets_s": TARGETS_S,
              **results, "met": verdict(results)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    results_md = args.out.parent.parent / "results.md"
    if results_md.exists():
        results_md.write_text(replace_section(results_md.read_text(), live_view_markdown(report)))
    print(json.dumps(report, indent=2))
    print(f"written to {args.out}, {results_md}" + (f" and {args.screenshot}" if args.screenshot else ""))


if __name__ == "__main__":
    main()
