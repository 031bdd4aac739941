"""onnxruntime latency of CenterFace models on this machine, side by side.

Each setting (input size, batch, intra-op threads) opens one session per model the way the detector
does (`streamd.detect.base.create_session`: all graph optimizations, CPU provider), warms them up,
then alternates runs between the models so that other load on the machine hits them alike. Reported:
the median and the 10th-90th percentile of the wall time of one `run`, in milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from streamd.detect.base import create_session
from streamd.detect.centerface import OUTPUT_NAMES, model_input_name, network_feed

WARMUP_RUNS = 3


@dataclass(frozen=True)
class LatencySetting:
    input_wh: tuple[int, int]
    batch: int
    threads: int


def _timed_run(session, feed: dict[str, np.ndarray]) -> float:
    start = time.perf_counter()
    session.run(list(OUTPUT_NAMES), feed)
    return (time.perf_counter() - start) * 1000.0


def measure_latency(
    models: dict[str, bytes], settings: list[LatencySetting], inputs: dict[tuple[int, int], np.ndarray], repeats: int
) -> list[dict[str, object]]:
    """One row per setting: per model, median and p10/p90 milliseconds. `inputs` maps an input size to
    a stack of real network inputs (at least the largest batch) of that size."""
    rows = []
    for setting in tqdm(settings, desc="latency", unit="setting"):
        blob = inputs[setting.input_wh][: setting.batch]
        if blob.shape[0] != setting.batch:
            raise ValueError(f"need {setting.batch} inputs of {setting.input_wh}, have {blob.shape[0]}")
        sessions = {
            name: create_session(model, ["CPUExecutionProvider"], setting.threads) for name, model in models.items()
        }
        # Each model gets the input it takes (an image-input model its uint8 pixels, ready made).
        feeds = {name: network_feed(model_input_name(session), np.ascontiguousarray(blob))
                 for name, session in sessions.items()}
        for name, session in sessions.items():
            for _ in range(WARMUP_RUNS):
                session.run(list(OUTPUT_NAMES), feeds[name])
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(repeats):
            for name, session in sessions.items():
                times[name].append(_timed_run(session, feeds[name]))
        row: dict[str, object] = {"input_wh": list(setting.input_wh), "batch": setting.batch,
                                  "threads": setting.threads, "repeats": repeats}
        for name, values in times.items():
            row[name] = {
                "median_ms": float(np.median(values)),
                "p10_ms": float(np.percentile(values, 10)),
                "p90_ms": float(np.percentile(values, 90)),
            }
        rows.append(row)
    return rows
