"""Shared fixtures: a short demo clip with ground truth, and frame decoding for checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.demo_clip import DemoClip, build_demo_clip
from streamd.sources.files import FileVideoSource


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> DemoClip:
    """One second of the 1280x720 demo clip (25 frames) with ground-truth face boxes."""
    folder = tmp_path_factory.mktemp("demo-clip")
    return build_demo_clip(folder / "clip.mp4", seconds=1.0)


def decode_all(path: Path) -> list[tuple[int | None, np.ndarray]]:
    """(pts, bgr) of every frame of a video."""
    with FileVideoSource(path) as source:
        return [(frame.pts, frame.bgr) for frame in source.frames()]
