"""`streamd make-benchmark` and `streamd eval --truth` end to end on a tiny clip (fast detector profile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamd.cli import main
from streamd.truth.mot import read_gt


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bench")
    assert main(["make-benchmark", str(folder), "--seconds", "0.24", "--scene", "sizes"]) == 0
    return folder


def test_make_benchmark_writes_mot_layout(tiny_bench: Path) -> None:
    manifest = json.loads((tiny_bench / "benchmark.json").read_text())
    assert manifest["split"] == "tune" and [clip["name"] for clip in manifest["clips"]] == ["tune-sizes"]
    assert (tiny_bench / "tune-sizes.mp4").is_file()
    assert "seqLength=6" in (tiny_bench / "tune-sizes" / "seqinfo.ini").read_text()
    truth = read_gt(tiny_bench / "tune-sizes" / "gt" / "gt.txt")
    assert {box.frame for box in truth} == set(range(1, 7))


def test_eval_truth_end_to_end(tiny_bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_dir = tmp_path / "report"
    clip, gt = tiny_bench / "tune-sizes.mp4", tiny_bench / "tune-sizes" / "gt" / "gt.txt"
    code = main(["eval", str(clip), "--truth", str(gt), "--profile", "fast", "--frame-step", "3", "-o", str(report_dir)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "streamd blur fast" in printed and ">=96" in printed
    report = json.loads((report_dir / "truth-report.json").read_text())
    run = report["runs"]["streamd blur fast"]
    assert run["frames"] == 6 and run["frames_scored"] == 2
    assert run["missed"]["total"] >= 10
    # the big faces of this clip are found and masked; the smallest ones are the hard part
    assert run["by_size"][">=96"]["total"] >= 1 and run["by_size"][">=96"]["missed"] == 0
    assert run["false_mask_pct"]["mean"] < 1.0
    assert sum(tally["total"] for tally in run["by_condition"].values()) >= run["missed"]["total"]
    for name in ("truth-report.md", "truth-instances.csv", "truth-misses-by-size.png"):
        assert (report_dir / name).stat().st_size > 0
    assert "| streamd blur fast |" in (report_dir / "truth-report.md").read_text()


def test_eval_truth_bad_ground_truth_is_one_line(tiny_bench: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gt.txt"
    bad.write_text("1,1,10,10,40,40,1,1,1\n2,1,10,10,forty,40,1,1,1\n")
    code = main(["eval", str(tiny_bench / "tune-sizes.mp4"), "--truth", str(bad), "-o", str(tmp_path / "r")])
    assert code != 0
    error = capsys.readouterr().err.strip()
    assert error == f"streamd: error: {bad} line 2: bb_width is 'forty', not a number"


def test_truth_options_need_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--profile", "fast", "-o", str(tmp_path / "r")]) != 0
    assert "--profile applies to the ground-truth benchmark only" in capsys.readouterr().err


def test_truth_runs_take_their_settings_from_a_config_file(tmp_path: Path) -> None:
    from streamd.config import load_config
    from streamd.truth.runner import streamd_camera

    config = tmp_path / "camera.yaml"
    config.write_text(
        "cameras:\n"
        "  - id: lobby\n"
        "    source: {type: rtsp, url: rtsp://127.0.0.1:8554/lobby}\n"
        "    detector: {type: centerface, threshold: 0.5, profile: fast}\n"
        "    tracker: {start_score: 0.6}\n"
        "    anonymizer: {method: mosaic, margin: 0.3}\n"
        "    outputs: {zmq: {endpoint: 'tcp://127.0.0.1:5599'}}\n"
    )
    base = load_config(config).cameras[0]
    camera = streamd_camera(tmp_path / "clip.mp4", "blur", "thorough", base)
    assert camera.source.type == "file" and camera.source.path == tmp_path / "clip.mp4"
    assert camera.outputs.zmq is None
    assert (camera.detector.threshold, camera.detector.profile) == (0.5, "thorough")
    assert camera.tracker.start_score == 0.6
    assert (camera.anonymizer.method, camera.anonymizer.margin) == ("blur", 0.3)
    assert streamd_camera(tmp_path / "clip.mp4", "blur", None, base).detector.profile == "fast"
