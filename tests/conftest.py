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


@pytest.fixture(scope="session", autouse=True)
def recording_host_key(tmp_path_factory: pytest.TempPathFactory):
    """A host key that signs the recordings tests write, trusted in a trust store of its own; both are
    found through the environment, by the code under test and by CLI subprocesses alike."""
    import os

    from streamd.reversible.keys.host_keys import HOST_KEY_ENV, TRUST_STORE_ENV, generate_host_key, trust_host

    folder = tmp_path_factory.mktemp("host-key")
    _, private_path, public_path = generate_host_key(folder / "keys")
    trust_host(public_path, folder / "trusted-hosts")
    saved = {name: os.environ.get(name) for name in (HOST_KEY_ENV, TRUST_STORE_ENV)}
    os.environ[HOST_KEY_ENV] = str(private_path)
    os.environ[TRUST_STORE_ENV] = str(folder / "trusted-hosts")
    yield private_path
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
