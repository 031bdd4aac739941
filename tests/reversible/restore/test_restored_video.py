"""The restored video's writer: yuv420p by default, full chroma with `lossless`, owner-only from the start."""

from __future__ import annotations

import stat
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamd.reversible.restore.restored_video import RestoredVideoWriter


def colour_stripes() -> np.ndarray:
    """Single-pixel stripes of opposite colours: what 4:2:0 chroma cannot hold."""
    bgr = np.zeros((64, 96, 3), np.uint8)
    bgr[:, 0::2] = (255, 0, 0)
    bgr[:, 1::2] = (0, 0, 255)
    return bgr


def decoded(path: Path) -> tuple[str, np.ndarray]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.format.name, frame.to_ndarray(format="bgr24")


def test_lossless_keeps_full_chroma_and_the_default_is_playable_4_2_0(tmp_path: Path) -> None:
    picture = colour_stripes()
    for lossless in (True, False):
        path = tmp_path / f"restored-{lossless}.mkv"
        writer = RestoredVideoWriter(path, (96, 64), Fraction(1, 25), Fraction(25), crf=8, lossless=lossless)
        assert stat.S_IMODE(writer._temporary_path.stat().st_mode) == 0o600
        for index in range(2):
            writer.write(picture, index)
        writer.close()
        pixel_format, bgr = decoded(path)
        error = np.abs(bgr.astype(int) - picture).mean()
        if lossless:
            assert pixel_format == "yuv444p" and error < 3
        else:
            # Neighbouring pixels share their chroma: the stripes blend.
            assert pixel_format == "yuv420p" and error > 30
