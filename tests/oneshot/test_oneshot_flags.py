"""deface-like flags of `streamd anonymize`, the default output name, --force, --recursive, --config."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from av_clips import write_clip

from streamd import sample_faces
from streamd.cli import build_parser, main, _one_shot_camera
from streamd.oneshot import default_output


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("streamd: error:") and "Traceback" not in err, err
    return lines[0]


def test_default_output_names() -> None:
    assert default_output(Path("/x/party.mp4")) == Path("/x/party.anonymized.mp4")
    assert default_output(Path("/x/party.mp4"), restorable=True) == Path("/x/party.anonymized.mkv")
    assert default_output(Path("/x/old.avi")) == Path("/x/old.anonymized.mkv")
    assert default_output(Path("/x/face.jpg")) == Path("/x/face.anonymized.jpg")


def test_without_o_the_output_goes_beside_the_input(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "party.mp4", 10)
    code, out, err = run(capsys, "anonymize", str(clip))
    assert code == 0, err
    assert (tmp_path / "party.anonymized.mp4").is_file()
    assert str(tmp_path / "party.anonymized.mp4") in out


def test_an_existing_output_is_refused_without_force(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "party.mp4", 10)
    output = tmp_path / "taken.mp4"
    output.write_bytes(b"keep me")
    code, _, err = run(capsys, "anonymize", str(clip), "-o", str(output))
    assert code == 1 and "already exists; pass --force" in one_line_error(err)
    assert output.read_bytes() == b"keep me"
    code, _, err = run(capsys, "anonymize", str(clip), "-o", str(output), "--force")
    assert code == 0, err
    assert output.stat().st_size > 1000


@pytest.mark.parametrize("name", ["x.avi", "x.mov", "x"])
def test_an_unsupported_container_is_one_line(tmp_path, capsys, name) -> None:
    clip = write_clip(tmp_path / "party.mp4", 5)
    code, _, err = run(capsys, "anonymize", str(clip), "-o", str(tmp_path / name))
    line = one_line_error(err)
    assert code == 1 and "the output must end in .mkv or .mp4" in line and "pydantic" not in err
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob(".x*"))


@pytest.mark.parametrize(("flag", "value", "fragment"), [
    ("--thresh", "1.5", "--thresh 1.5: input should be less than 1"),
    ("--detect-every", "0", "--detect-every 0: input should be greater than or equal to 1"),
    ("--mask-scale", "5", "--mask-scale must be between 1 and 3"),
    ("--crf", "60", "crf: input should be less than or equal to 51"),
])
def test_out_of_range_flags_are_one_line(tmp_path, capsys, flag, value, fragment) -> None:
    clip = write_clip(tmp_path / "party.mp4", 5)
    code, _, err = run(capsys, "anonymize", str(clip), "-o", str(tmp_path / "o.mp4"), flag, value)
    assert code == 1 and fragment in one_line_error(err)


def test_flags_land_in_the_camera_settings() -> None:
    args = build_parser().parse_args(["anonymize", "in.mp4", "--thresh", "0.6", "--detect-every", "3",
                                      "--mask-scale", "2.0", "--profile", "fast"])
    camera = _one_shot_camera(args)
    assert camera.detector.threshold == 0.6 and camera.detector.profile == "fast"
    assert camera.tracker.detect_every == 3
    assert camera.anonymizer.margin == pytest.approx(0.5)


def _changed_pixels(original: np.ndarray, masked: np.ndarray) -> int:
    return int((np.abs(original.astype(int) - masked.astype(int)).max(axis=2) > 8).sum())


def test_mask_scale_grows_the_masked_area(tmp_path, capsys) -> None:
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), sample_faces.astronaut_bgr())
    changed = {}
    for scale in ("1.0", "2.0"):
        output = tmp_path / f"masked-{scale}.png"
        code, _, err = run(capsys, "anonymize", str(photo), "-o", str(output), "--method", "solid",
                           "--mask-scale", scale)
        assert code == 0, err
        changed[scale] = _changed_pixels(sample_faces.astronaut_bgr(), cv2.imread(str(output)))
    assert changed["1.0"] > 500, "the face is masked"
    assert changed["2.0"] > 2 * changed["1.0"], changed


def test_thresh_above_every_score_masks_nothing(tmp_path, capsys) -> None:
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), sample_faces.astronaut_bgr())
    code, out, err = run(capsys, "anonymize", str(photo), "-o", str(tmp_path / "o.png"), "--thresh", "0.999")
    assert code == 0, err
    assert "0 faces masked" in out


def test_crf_and_config_crf_change_the_quality(tmp_path, capsys) -> None:
    clip = write_clip(tmp_path / "party.mp4", 25, size_wh=(320, 240))
    sizes = {}
    for name, extra in (("fine", ["--crf", "5"]), ("coarse", ["--crf", "45", "--preset", "ultrafast"])):
        code, _, err = run(capsys, "anonymize", str(clip), "-o", str(tmp_path / f"{name}.mp4"), *extra)
        assert code == 0, err
        sizes[name] = (tmp_path / f"{name}.mp4").stat().st_size
    assert sizes["fine"] > 2 * sizes["coarse"], sizes
    config = tmp_path / "coarse.yaml"
    config.write_text("cameras:\n  - id: c\n    source: {type: file, path: unused.mp4}\n"
                      "    outputs:\n      file: {path: unused.mp4, crf: 45, preset: ultrafast}\n")
    code, _, err = run(capsys, "anonymize", str(clip), "-o", str(tmp_path / "from-config.mp4"), "--config", str(config))
    assert code == 0, err
    assert (tmp_path / "from-config.mp4").stat().st_size == pytest.approx(sizes["coarse"], rel=0.05)


def _photo_tree(root: Path) -> Path:
    folder = root / "photos"
    (folder / "trip" / "day1").mkdir(parents=True)
    cv2.imwrite(str(folder / "top.png"), sample_faces.astronaut_bgr())
    cv2.imwrite(str(folder / "trip" / "a.png"), sample_faces.astronaut_bgr())
    cv2.imwrite(str(folder / "trip" / "day1" / "b.jpg"), sample_faces.astronaut_bgr())
    return folder


def test_subfolders_are_reported_once_without_recursive(tmp_path, capsys) -> None:
    folder = _photo_tree(tmp_path)
    code, out, err = run(capsys, "anonymize", str(folder), "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")) == ["top.png"]
    notes = [line for line in err.splitlines() if "subfolder" in line]
    assert len(notes) == 1 and "1 subfolder(s) not searched (trip)" in notes[0] and "--recursive" in notes[0]


def test_recursive_mirrors_the_subfolders(tmp_path, capsys) -> None:
    folder = _photo_tree(tmp_path)
    code, out, err = run(capsys, "anonymize", str(folder), "--recursive")
    assert code == 0, err
    written = tmp_path / "photos.anonymized"
    assert sorted(p.relative_to(written).as_posix() for p in written.rglob("*.*")) == [
        "top.png", "trip/a.png", "trip/day1/b.jpg"]
    assert "3 images written, 3 faces masked" in out
    assert "subfolder" not in err


def test_recursive_skips_an_output_folder_inside_the_input(tmp_path, capsys) -> None:
    folder = _photo_tree(tmp_path)
    code, _, err = run(capsys, "anonymize", str(folder), "-o", str(folder / "masked"), "--recursive")
    assert code == 0, err
    code, _, err = run(capsys, "anonymize", str(folder), "-o", str(folder / "masked"), "--recursive", "--force")
    assert code == 0, err
    assert not (folder / "masked" / "masked").exists()


def test_a_skipped_photo_is_named_once(tmp_path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), sample_faces.astronaut_bgr())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, err = run(capsys, "anonymize", str(folder), "-o", str(tmp_path / "out"))
    assert code == 1
    assert err.count("broken.jpg") == 1, err
    assert "streamd: skipped " in err
