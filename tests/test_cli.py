"""The command line as a user meets it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from streamd import sample_faces
from streamd.cli import main

from conftest import decode_all


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("streamd: error:"), err
    assert fragment in lines[-1], err
    assert "Traceback" not in err


def test_anonymize_video_keeps_frame_count_and_timing(demo_clip, tmp_path, capsys) -> None:
    output = tmp_path / "out.mkv"
    code, out, _ = run_cli(capsys, "anonymize", str(demo_clip.path), "-o", str(output), "--method", "mosaic")
    assert code == 0
    assert "frames" in out and "mosaic" in out
    original = decode_all(demo_clip.path)
    anonymized = decode_all(output)
    assert len(anonymized) == len(original)
    before = [(pts / 12800) for pts, _ in original]
    after_tb = None
    import av

    with av.open(str(output)) as container:
        after_tb = container.streams.video[0].time_base
    after = [float(pts * after_tb) for pts, _ in anonymized]
    assert after == pytest.approx(before, abs=1e-3)


def test_anonymize_image_and_folder(tmp_path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "group.jpg"), sample_faces.group_photo_bgr())
    cv2.imwrite(str(folder / "astronaut.png"), sample_faces.astronaut_bgr())
    (folder / "notes.txt").write_text("not an image")
    out_folder = tmp_path / "anonymized"
    code, out, _ = run_cli(capsys, "anonymize", str(folder), "-o", str(out_folder), "--method", "solid")
    assert code == 0, out
    assert sorted(p.name for p in out_folder.iterdir()) == ["astronaut.png", "group.jpg"]
    assert "7 faces" in out
    group_out = cv2.imread(str(out_folder / "group.jpg"))
    assert group_out.shape == sample_faces.group_photo_bgr().shape

    single = tmp_path / "one.png"
    code, out, _ = run_cli(capsys, "anonymize", str(folder / "astronaut.png"), "-o", str(single))
    assert code == 0 and single.exists() and "1 faces" in out


def test_folder_with_an_unreadable_image_keeps_the_rest(tmp_path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), sample_faces.astronaut_bgr())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, _, err = run_cli(capsys, "anonymize", str(folder), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "broken.jpg" in err
    assert (tmp_path / "out" / "a.png").exists()


@pytest.mark.parametrize(
    ("make_input", "fragment"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: (d / "random.mp4").write_bytes(os.urandom(4096)) and d / "random.mp4", "random.mp4"),
        (lambda d: (d / "text.mp4").write_text("hello\n" * 100) and d / "text.mp4", "text.mp4"),
    ],
)
def test_bad_video_input_is_one_line_and_leaves_nothing(tmp_path, capsys, make_input, fragment) -> None:
    source = make_input(tmp_path)
    output = tmp_path / "out" / "result.mp4"
    output.parent.mkdir()
    code, _, err = run_cli(capsys, "anonymize", str(source), "-o", str(output))
    assert code != 0
    assert_one_line_error(err, fragment)
    assert list(output.parent.iterdir()) == []


def test_unwritable_output(demo_clip, tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "anonymize", str(demo_clip.path), "-o", str(tmp_path / "nope" / "deeper" / "o.mp4"))
    assert code != 0
    assert_one_line_error(err, "nope")


def test_validate_config_points_at_the_line(tmp_path, capsys) -> None:
    config = tmp_path / "cam.yaml"
    config.write_text("cameras:\n  - id: a\n    source:\n      type: file\n      path: a.mp4\n"
                      "    tracker:\n      max_missed_frames: 100000\n")
    code, _, err = run_cli(capsys, "validate-config", str(config))
    assert code == 2
    assert_one_line_error(err, f"{config}:7: cameras.0.tracker.max_missed_frames")
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"")  # validate-config checks that the source file is there, not what it holds
    config.write_text(f"cameras:\n  - id: a\n    source: {{type: file, path: {clip}}}\n")
    code, out, _ = run_cli(capsys, "validate-config", str(config))
    assert code == 0 and "ok" in out


def test_console_script_exit_codes(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: a\n    source: {type: file, path: a.mp4}\n    sauce: 1\n")
    completed = subprocess.run([sys.executable, "-m", "streamd.cli", "validate-config", str(bad)],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1].startswith(f"streamd: error: {bad}:4: cameras.0.sauce: unknown key")


def test_demo_masks_every_ground_truth_face(tmp_path, capsys) -> None:
    code, out, _ = run_cli(capsys, "demo", "-o", str(tmp_path), "--seconds", "1")
    assert code == 0, out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_out"] == summary["frames_in"] == 25
    assert summary["truth_faces"] == 25 * 7
    assert summary["truth_faces_covered"] == summary["truth_faces"]
    sheet = cv2.imread(summary["contact_sheet"])
    assert sheet is not None and sheet.shape[1] > 1000
    assert len(decode_all(Path(summary["output_clip"]))) == 25


def test_bench_writes_a_report(demo_clip, tmp_path, capsys) -> None:
    report_path = tmp_path / "bench.json"
    code, out, _ = run_cli(capsys, "bench", str(demo_clip.path), "-o", str(report_path),
                           "--work-dir", str(tmp_path / "work"))
    assert code == 0
    report = json.loads(report_path.read_text())
    ours = report["streamd"]
    assert ours["frames"] == demo_clip.frame_count and ours["fps"] > 0
    assert set(ours["stages"]) == {"decode", "detect", "track", "anonymize", "encode", "publish"}
    assert all(stage["count"] == demo_clip.frame_count for stage in ours["stages"].values())
    live = report["streamd_live"]
    assert live["frames"] == demo_clip.frame_count and live["latency_p50_ms"] > 0
    assert "p95" in out
