from pathlib import Path

import pytest

from streamd.config import CenterFaceConfig, load_config, parse_config
from streamd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

VALID = """\
cameras:
  - id: lobby
    source:
      type: file
      path: in.mp4
    tracker:
      max_missed_frames: 5
"""


def test_shipped_configs_are_valid() -> None:
    assert [c.id for c in load_config(REPO / "configs" / "demo.yaml").cameras] == ["demo"]
    assert len(load_config(REPO / "configs" / "camera.example.yaml").cameras) == 2


def test_defaults_fill_in() -> None:
    camera = parse_config(VALID).cameras[0]
    assert camera.tracker.max_missed_frames == 5
    assert isinstance(camera.detector, CenterFaceConfig)
    assert camera.detector.providers == ["CPUExecutionProvider"]
    assert camera.anonymizer.method == "blur"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (VALID + "    colour: red\n", 8, "cameras.0.colour: unknown key"),
        (VALID.replace("max_missed_frames: 5", "max_missed_frames: -3"), 7, "greater than or equal to 0"),
        (VALID.replace("type: file", "type: webcam"), 4, "cameras.0.source.type"),
        ("cameras:\n  - id: a\n    source:\n      type: rtsp\n      url: http://cam\n", 5, "rtsp://"),
        ("cameras:\n  - id: a\n    source: {type: file, path: a.mp4}\n    outputs:\n      file:\n"
         "        path: out.avi\n", 6, ".mkv or .mp4"),
        ("cameras:\n  - id: a\n", 2, "source: required key is missing"),
        ("cameras: [\n", 2, "not valid YAML"),
    ],
)
def test_errors_name_the_yaml_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cam.yaml")
    message = str(caught.value)
    assert message.startswith(f"cam.yaml:{line}:"), message
    assert fragment in message


def test_duplicate_camera_ids_rejected() -> None:
    text = VALID + "  - id: lobby\n    source: {type: file, path: b.mp4}\n"
    with pytest.raises(ConfigError, match="used twice"):
        parse_config(text)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)
