"""The live page in headless Chromium (Debian's package): it loads, lists the camera, plays MJPEG and
HLS, and the pictures the browser shows are anonymized (the face, found by the real CenterFace, is
filled). Skipped, saying why, where Chromium or websocket-client is missing."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_helpers import face_box, face_core_mean, face_picture, is_fill, live_config, write_face_clip
from service_helpers import RunningService

from export.headless_chromium import INSTALL_HINT, PAGE_STATE_JS, HeadlessChromium, find_chromium, pixels_js

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(find_chromium() is None, reason=f"no Chromium on PATH ({INSTALL_HINT}): the live page "
                       "is not tested in a browser"),
]
pytest.importorskip("websocket", reason="websocket-client (dev extra) drives the browser")


def shown_picture(browser: HeadlessChromium, kind: str) -> np.ndarray:
    """What the browser shows in a view, as BGR."""
    shown = browser.evaluate(pixels_js(kind, "lobby"))
    assert shown is not None, f"the {kind} view shows nothing"
    rgb = np.frombuffer(base64.b64decode(shown["rgb"]), np.uint8).reshape(shown["height"], shown["width"], 3)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def wait_for_page(browser: HeadlessChromium, timeout_s: float) -> dict[str, Any]:
    """The page's state once both views of the camera show frames."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = browser.evaluate(PAGE_STATE_JS)
        views = {view["kind"]: view for view in state["views"]}
        if views.get("mjpeg", {}).get("updates", 0) >= 3 and views.get("hls", {}).get("frames", 0) >= 10:
            return state
        time.sleep(0.25)
    raise AssertionError(f"the live page did not play both views within {timeout_s} s: {state}")


def test_live_page_plays_anonymized_mjpeg_and_hls(tmp_path: Path) -> None:
    clip = write_face_clip(tmp_path / "face.mp4")
    box = face_box(face_picture())
    with RunningService(live_config(clip)) as running:
        base = running.service.metrics_server.base_url
        with HeadlessChromium() as browser:
            browser.navigate(base + "/")
            state = wait_for_page(browser, timeout_s=90)
            mjpeg_shown = shown_picture(browser, "mjpeg")
            hls_shown = shown_picture(browser, "hls")
    assert state["cameras"] == 1
    (row,) = state["rows"]
    assert row[0] == "lobby" and row[1] == "up"
    views = {view["kind"]: view for view in state["views"]}
    assert views["mjpeg"]["state"] == "playing" and views["hls"]["state"] == "playing"
    assert views["mjpeg"]["firstFrameMs"] is not None and views["hls"]["firstFrameMs"] is not None
    for kind, shown in (("mjpeg", mjpeg_shown), ("hls", hls_shown)):
        assert shown.shape == (360, 640, 3), kind
        assert is_fill(face_core_mean(shown, box)), f"the browser's {kind} view shows the face"
        assert not is_fill(face_core_mean(shown, (0, 0, 120, 120))), f"the {kind} view is not the picture"
