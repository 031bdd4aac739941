"""Restoring faces sealed from decoded planes of a sideways phone clip, and from BGR pixels when the
source's planes cannot serve (full range): the face comes back upright and close to the source."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from restore_helpers import anonymize_reversibly, inner_box, make_keypair, psnr

from streamd import sample_faces
from streamd.reversible.recording.recording_format import read_recording
from streamd.reversible.restore.restore import RestoreRequest, restore_recording
from streamd.sources.files import FileVideoSource
from streamd.sources.orientation import write_rotated_clip

FRAMES = 12
WIDTH, HEIGHT = 640, 368
# A near-static scene: the anonymized video's encoder emits small packets (a first NAL unit of 256-511
# bytes makes a length-prefixed packet start like an Annex B start code), which the signed video check
# must read right.
#: Restored face regions against the decoded, upright source (BGR), in the default yuv420p output.
RESTORED_MIN_DB = 38.0


def _scenes() -> list[np.ndarray]:
    """Upright 640x368 frames with the astronaut's face, moving a few pixels a frame."""
    photo = cv2.resize(sample_faces.astronaut_bgr(), (260, 260), interpolation=cv2.INTER_AREA)
    scenes = []
    for index in range(FRAMES):
        scene = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        scene[::16, :] = 200
        x0, y0 = 129 + 3 * index, 41 + 2 * index  # odd and even offsets: both sides of the chroma grid
        scene[y0:y0 + 260, x0:x0 + 260] = photo
        scenes.append(scene)
    return scenes


def _full_range_clip(path: Path, scenes: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        for index, scene in enumerate(scenes):
            frame = av.VideoFrame.from_ndarray(scene, format="bgr24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("kind", ["sideways", "full_range"])
def test_restored_face_matches_the_upright_source(tmp_path: Path, caplog, kind: str) -> None:
    scenes = _scenes()
    if kind == "sideways":
        # Stored portrait, turned 90 degrees clockwise for display: the planes are turned with the pixels.
        clip = write_rotated_clip(scenes, tmp_path / "phone.mp4", 90, 25, crf=18)
        expected_path = "decoded source's yuv420p planes"
    else:
        clip = _full_range_clip(tmp_path / "full.mp4", scenes)
        expected_path = "BGR pixels"
    private_key, public_key = make_keypair(tmp_path / "keys")
    with caplog.at_level(logging.INFO, logger="streamd.reversible.sealing.stream_sealer"):
        recording = anonymize_reversibly(clip, tmp_path / "anonymized.mkv", [public_key])
    said = [record.getMessage() for record in caplog.records if "face streams coded from" in record.getMessage()]
    assert len(said) == 1 and expected_path in said[0], said

    output = tmp_path / "restored.mkv"
    result = restore_recording(RestoreRequest(input_path=recording, output_path=output, key_path=private_key,
                                              reason="test", audit_log_path=tmp_path / "audit.jsonl"))
    assert result.frames_written == FRAMES
    with FileVideoSource(clip) as source:
        originals = [frame.bgr for frame in source.frames()]
    with av.open(str(output)) as container:
        restored = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    anonymized = []
    with av.open(str(recording)) as container:
        anonymized = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    values, masked = [], []
    for record in read_recording(recording).records:
        assert record.document["faces"], f"frame {record.frame_index}: the face was not found"
        x0, y0, x1, y1 = inner_box(record.document["faces"][0]["xyxy"])
        original = originals[record.frame_index][y0:y1, x0:x1]
        values.append(psnr(original, restored[record.frame_index][y0:y1, x0:x1]))
        masked.append(psnr(original, anonymized[record.frame_index][y0:y1, x0:x1]))
    assert len(values) == FRAMES
    assert max(masked) < 25.0
    assert min(values) >= RESTORED_MIN_DB, [round(value, 2) for value in values]
