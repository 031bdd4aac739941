"""The live view over real HTTP from a running service: MJPEG, snapshot and HLS carry the anonymized
frames (the astronaut's face, found by the real CenterFace, is filled; the source is never served)."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from live_helpers import face_box, face_core_mean, face_picture, http_get, is_fill, live_config, read_mjpeg, write_face_clip
from service_helpers import RunningService, wait_until

from streamd.config import CameraConfig
from streamd.errors import ModelError
from streamd.pipeline import StreamPipeline
from streamd.stats import PipelineStats
from streamd.service.supervisor import open_camera_stream

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_clip(tmp_path_factory.mktemp("live") / "face.mp4")


@pytest.fixture(scope="module")
def box() -> tuple[int, int, int, int]:
    return face_box(face_picture())


def test_the_source_face_is_not_the_fill(box: tuple[int, int, int, int]) -> None:
    assert not is_fill(face_core_mean(face_picture(), box)), "the test clip must show a face, not the fill colour"


def test_mjpeg_and_snapshot_serve_anonymized_frames(clip: Path, box: tuple[int, int, int, int]) -> None:
    with RunningService(live_config(clip)) as running:
        base = running.service.metrics_server.base_url
        content_type, parts = read_mjpeg(base + "/live/lobby/mjpeg", parts=6)
        status, headers, jpeg = http_get(base + "/live/lobby/snapshot.jpg")
    assert content_type.startswith("multipart/x-mixed-replace; boundary=")
    indices = [int(part.headers["x-frame-index"]) for part in parts]
    assert indices == sorted(indices) and len(set(indices)) == len(indices), indices
    for part in parts:
        assert part.bgr.shape == (360, 640, 3)
        assert is_fill(face_core_mean(part.bgr, box)), f"frame {part.headers['x-frame-index']}: face not filled"
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"


def test_live_frames_are_scaled_to_max_width(clip: Path, box: tuple[int, int, int, int]) -> None:
    with RunningService(live_config(clip, live={"max_width": 320, "hls": False})) as running:
        base = running.service.metrics_server.base_url
        _, parts = read_mjpeg(base + "/live/lobby/mjpeg", parts=2)
        status, _, _ = http_get(base + "/live/lobby/index.m3u8")
    assert parts[-1].bgr.shape == (180, 320, 3)
    assert is_fill(face_core_mean(parts[-1].bgr, box))
    assert status == 404, "HLS is off for this camera"


def hls_segment_frames(base: str) -> tuple[str, list[np.ndarray]]:
    """The playlist and the decoded frames of its newest segment."""
    status, headers, playlist = http_get(base + "/live/lobby/index.m3u8")
    assert status == 200, playlist
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    text = playlist.decode()
    segment = [line for line in text.splitlines() if line.endswith(".ts")][-1]
    status, headers, data = http_get(base + "/live/lobby/" + segment)
    assert status == 200 and headers["Content-Type"] == "video/mp2t"
    with av.open(io.BytesIO(data), format="mpegts") as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return text, [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def test_hls_segments_are_h264_of_anonymized_frames_and_encoding_stops_when_idle(
    clip: Path, box: tuple[int, int, int, int]
) -> None:
    with RunningService(live_config(clip, live={"hls_segment_s": 1.0, "idle_stop_s": 2.0})) as running:
        base = running.service.metrics_server.base_url
        hls = running.service.live_views.hls("lobby")
        assert hls is not None and not hls.running, "HLS must not encode before anyone asks"
        playlist, frames = hls_segment_frames(base)
        assert "#EXT-X-TARGETDURATION:" in playlist and "#EXT-X-ENDLIST" not in playlist
        assert frames, "a segment without frames"
        for bgr in frames:
            assert bgr.shape == (360, 640, 3)
            assert is_fill(face_core_mean(bgr, box)), "an HLS frame shows the face"
        folder = hls._folder
        assert folder is not None and folder.is_dir()
        wait_until(lambda: not hls.running, 20, "HLS encoding to stop once nobody asks", poll_s=0.2)
        assert not folder.exists(), "segments left behind"
        _, frames = hls_segment_frames(base)  # asking again starts it again
        assert frames and hls.running


def test_camera_list_and_unknown_camera(clip: Path) -> None:
    with RunningService(live_config(clip)) as running:
        base = running.service.metrics_server.base_url
        running.wait_frames("lobby", 3, timeout_s=20)
        status, _, body = http_get(base + "/live/cameras.json")
        missing, _, _ = http_get(base + "/live/nobody/mjpeg")
        bad_segment, _, _ = http_get(base + "/live/lobby/..%2F..%2Fetc%2Fpasswd.ts")
        page_status, page_headers, page = http_get(base + "/")
        script_status, _, script = http_get(base + "/live/hls.light.min.js")
    assert status == 200
    (camera,) = json.loads(body)
    assert camera["id"] == "lobby" and camera["state"] == "up" and camera["frames_out"] >= 3
    assert camera["mjpeg"] == "/live/lobby/mjpeg" and camera["hls"] == "/live/lobby/index.m3u8"
    assert {"fps", "faces", "drops", "healthy"} <= set(camera)
    assert missing == 404 and bad_segment == 404
    assert page_status == 200 and page_headers["Content-Type"].startswith("text/html") and b"/live/cameras.json" in page
    assert script_status == 200 and len(script) > 100_000


@contextlib.contextmanager
def detector_always_failing(camera: CameraConfig, stats: PipelineStats) -> Iterator[StreamPipeline]:
    with open_camera_stream(camera, stats) as pipeline:
        def detect_frame(bgr: np.ndarray, *args: object) -> object:
            raise ModelError("injected failure")

        pipeline.detector.detect_frame = detect_frame  # frames are detected side by side
        yield pipeline


def test_a_frame_that_failed_processing_is_served_blank(clip: Path) -> None:
    with RunningService(live_config(clip), opener=detector_always_failing) as running:
        base = running.service.metrics_server.base_url
        _, parts = read_mjpeg(base + "/live/lobby/mjpeg", parts=3)
    for part in parts:
        assert part.bgr.max() <= 8, "a frame whose faces could not be found went out with picture content"


def test_mjpeg_viewers_end_when_the_service_stops(clip: Path) -> None:
    running = RunningService(live_config(clip))
    with running:
        base = running.service.metrics_server.base_url
        read_mjpeg(base + "/live/lobby/mjpeg", parts=1)
        feed = running.service.live_views.feed("lobby")
        assert feed is not None
    started = time.monotonic()
    assert feed.closed and feed.wait_newer(0, timeout_s=5) is None
    assert time.monotonic() - started < 5


def test_a_live_view_added_by_reload_serves_frames(clip: Path, tmp_path: Path) -> None:
    without = live_config(clip)
    document = json.loads(without.model_dump_json())
    document["cameras"][0]["outputs"]["live"] = None
    config_path = tmp_path / "streamd.yaml"
    config_path.write_text(json.dumps(document))  # JSON is YAML
    from streamd.config import load_config

    with RunningService(load_config(config_path), config_path=config_path) as running:
        base = running.service.metrics_server.base_url
        assert http_get(base + "/live/lobby/mjpeg")[0] == 404
        document["cameras"][0]["outputs"]["live"] = {"hls": False}
        config_path.write_text(json.dumps(document))
        running.service.request_reload()
        wait_until(lambda: json.loads(http_get(base + "/live/cameras.json")[2])[0]["mjpeg"] is not None, 20,
                   "the live view after the reload")
        _, parts = read_mjpeg(base + "/live/lobby/mjpeg", parts=2)
    assert all(part.bgr.shape == (360, 640, 3) for part in parts)
