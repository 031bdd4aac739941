"""Rotation metadata on input: phone clips, sideways cameras and H.264 display orientation SEI give
upright frames, the output is upright, and faces are found on the upright frames."""

from __future__ import annotations

import re

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from rtsp_server import RtspTestServer

from streamd import sample_faces
from streamd.cli import main
from streamd.config import AnonymizerConfig, CameraConfig, FileSourceConfig, RtspSourceConfig, parse_config
from streamd.errors import ConfigError, SinkError
from streamd.sources.files import FileVideoSource
from streamd.oneshot import anonymize_video
from streamd.sources.orientation import (
    UPRIGHT,
    Orientation,
    first_frame_orientation,
    frame_orientation,
    orientation_from_display_matrix,
    to_upright,
    write_rotated_clip,
)
from streamd.sources.rtsp import RtspVideoSource
from streamd.types import VideoFrame

pytestmark = pytest.mark.timeout(120)

# An upright portrait picture with a different colour in each quadrant (BGR).
UPRIGHT_WH = (64, 96)
TOP_LEFT, TOP_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)
ONE = 1 << 16  # 1.0 in a display matrix's 16.16 fixed point


def quadrant_picture(width: int = UPRIGHT_WH[0], height: int = UPRIGHT_WH[1]) -> np.ndarray:
    picture = np.zeros((height, width, 3), np.uint8)
    half_w, half_h = width // 2, height // 2
    picture[:half_h, :half_w] = TOP_LEFT
    picture[:half_h, half_w:] = TOP_RIGHT
    picture[half_h:, :half_w] = BOTTOM_LEFT
    picture[half_h:, half_w:] = BOTTOM_RIGHT
    return picture


def quadrant_colours(bgr: np.ndarray) -> list[tuple[int, int, int]]:
    """Mean colour of the middle of each quadrant: top left, top right, bottom left, bottom right."""
    height, width = bgr.shape[:2]
    centres = [(width // 4, height // 4), (3 * width // 4, height // 4),
               (width // 4, 3 * height // 4), (3 * width // 4, 3 * height // 4)]
    return [tuple(int(v) for v in bgr[y - 4:y + 4, x - 4:x + 4].reshape(-1, 3).mean(axis=0)) for x, y in centres]


def assert_upright_quadrants(bgr: np.ndarray) -> None:
    assert (bgr.shape[1], bgr.shape[0]) == UPRIGHT_WH
    for seen, expected in zip(quadrant_colours(bgr), (TOP_LEFT, TOP_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT)):
        assert np.abs(np.subtract(seen, expected)).max() < 40, (quadrant_colours(bgr), "not upright")


def tkhd_matrix(path: Path) -> tuple[int, ...]:
    """The 3x3 matrix of the MP4 track header (what players and phones read), as 9 raw int32."""
    data = path.read_bytes()
    start = data.index(b"tkhd") + 4
    version = data[start]
    offset = start + (52 if version == 1 else 40)
    return struct.unpack(">9i", data[offset:offset + 36])


@pytest.fixture(scope="module")
def phone_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("phone")
    return {rotation: write_rotated_clip([quadrant_picture()] * 5, folder / f"phone-{rotation}.mp4", rotation, 25)
            for rotation in (0, 90, 180, 270)}


# ---------------------------------------------------------------- writing a phone clip
def test_portrait_phone_clip_has_the_iphone_track_matrix_and_sideways_frames(phone_clips: dict[int, Path]) -> None:
    path = phone_clips[90]
    # A phone held upright: landscape pixels and the track matrix [0 1 0; -1 0 0; ...], which players
    # (and FFmpeg, as a display rotation of -90 degrees) turn 90 degrees clockwise.
    a, b, _, c, d, *_ = tkhd_matrix(path)
    assert (a, b, c, d) == (0, ONE, -ONE, 0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (UPRIGHT_WH[1], UPRIGHT_WH[0])
        frame = next(container.decode(stream))
        assert frame.rotation == -90  # FFmpeg's angle is counter-clockwise
        stored = frame.to_ndarray(format="bgr24")
    # The upright top-left quadrant is stored at the bottom left, as a clockwise turn moves it to the top left.
    assert np.abs(np.subtract(quadrant_colours(stored)[2], TOP_LEFT)).max() < 40
    assert frame_orientation(frame) == Orientation(90)


@pytest.mark.parametrize(("rotation", "ffmpeg_angle"), [(0, 0), (90, -90), (180, 180), (270, 90)])
def test_written_clips_read_back_with_their_rotation(phone_clips: dict[int, Path], rotation: int,
                                                     ffmpeg_angle: int) -> None:
    with av.open(str(phone_clips[rotation])) as container:
        frame = next(container.decode(video=0))
        assert abs(frame.rotation) == abs(ffmpeg_angle) and (ffmpeg_angle == 180 or frame.rotation == ffmpeg_angle)
    assert first_frame_orientation(phone_clips[rotation]) == Orientation(rotation)


def test_write_rotated_clip_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rotation"):
        write_rotated_clip([quadrant_picture()], tmp_path / "x.mp4", 45, 25)
    with pytest.raises(SinkError, match=".mp4"):
        write_rotated_clip([quadrant_picture()], tmp_path / "x.mkv", 90, 25)
    with pytest.raises(SinkError, match="no frames"):
        write_rotated_clip([], tmp_path / "empty.mp4", 90, 25)
    with pytest.raises(SinkError, match="even"):
        write_rotated_clip([np.zeros((9, 8, 3), np.uint8)], tmp_path / "odd.mp4", 90, 25)
    assert sorted(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- display matrices
@pytest.mark.parametrize(("degrees", "hflip", "vflip", "expected"), [
    (-90, False, False, Orientation(90)),
    (90, False, False, Orientation(270)),
    (180, False, False, Orientation(180)),
    (0, True, False, Orientation(0, mirror=True)),
    (0, False, True, Orientation(180, mirror=True)),
    (-90, True, False, Orientation(90, mirror=True)),
    (90, True, False, Orientation(270, mirror=True)),
])
def test_display_matrices_with_flips_turn_out_as_ffmpeg_displays_them(tmp_path: Path, degrees: int, hflip: bool,
                                                                      vflip: bool, expected: Orientation) -> None:
    """Each matrix written through FFmpeg reads back as the orientation that maps the stored pixels
    the way the matrix does: stored (x, y) is displayed at (a x + c y, b x + d y) plus a shift."""
    path = tmp_path / "flip.mp4"
    stored = quadrant_picture()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = UPRIGHT_WH[0], UPRIGHT_WH[1], "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="bgr24")))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        matrix = struct.unpack("<9i", bytes(frame.side_data["DISPLAYMATRIX"]))
    orientation = frame_orientation(frame)
    assert orientation == expected
    a, b, c, d = (round(matrix[i] / ONE) for i in (0, 1, 3, 4))
    height, width = stored.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    display_x, display_y = a * xs + c * ys, b * xs + d * ys
    display_x -= display_x.min()
    display_y -= display_y.min()
    expected_display = np.zeros((display_y.max() + 1, display_x.max() + 1, 3), np.uint8)
    expected_display[display_y, display_x] = stored
    assert np.array_equal(to_upright(stored, orientation), expected_display)


def test_matrix_off_a_right_angle_goes_to_the_nearest() -> None:
    cos, sin = round(np.cos(np.radians(80)) * ONE), round(np.sin(np.radians(80)) * ONE)
    # av_display_rotation_set(-80): 80 degrees counter-clockwise, nearest to a 270 degree clockwise turn.
    assert orientation_from_display_matrix([cos, -sin, 0, sin, cos, 0, 0, 0, 1 << 30]) == Orientation(270)
    assert orientation_from_display_matrix([0] * 8 + [1 << 30]) == UPRIGHT
    # A scaled matrix (non-square pixels) keeps its rotation.
    assert orientation_from_display_matrix([0, 2 * ONE, 0, -ONE, 0, 0, 0, 0, 1 << 30]) == Orientation(90)


# ---------------------------------------------------------------- file source
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_file_source_yields_upright_frames_of_the_upright_size(phone_clips: dict[int, Path], rotation: int) -> None:
    with FileVideoSource(phone_clips[rotation]) as source:
        assert source.orientation == Orientation(rotation)
        assert source.resolution_wh == UPRIGHT_WH
        frames = list(source.frames())
    assert len(frames) == 5
    for frame in frames:
        assert frame.resolution_wh == UPRIGHT_WH
        assert_upright_quadrants(frame.bgr)


def test_rotation_setting_replaces_the_metadata(phone_clips: dict[int, Path]) -> None:
    # A camera mounted sideways writes no metadata: the setting turns its frames.
    with FileVideoSource(phone_clips[0]) as plain:
        assert plain.orientation == UPRIGHT
    sideways = quadrant_picture()
    with FileVideoSource(phone_clips[0], rotation=90) as turned:
        assert turned.resolution_wh == (UPRIGHT_WH[1], UPRIGHT_WH[0])
        frame = next(iter(turned.frames()))
    assert np.abs(frame.bgr.astype(int) - cv2.rotate(sideways, cv2.ROTATE_90_CLOCKWISE)).mean() < 8
    # 0 means "as stored": a phone clip then comes out sideways.
    with FileVideoSource(phone_clips[90], rotation=0) as as_stored:
        assert as_stored.resolution_wh == (UPRIGHT_WH[1], UPRIGHT_WH[0])


# ---------------------------------------------------------------- H.264 display orientation SEI
def _bits_to_bytes(bits: str) -> bytes:
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def _ue(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def display_orientation_sei(anticlockwise_deg: int) -> bytes:
    """An H.264 SEI NAL unit (payload type 47) recommending an anticlockwise rotation before display."""
    bits = "0" + "0" + "0" + format(anticlockwise_deg * 65536 // 360, "016b") + _ue(1) + "0"
    bits += "1" + "0" * (-(len(bits) + 1) % 8)  # payload byte alignment
    payload = _bits_to_bytes(bits)
    rbsp = bytes([47, len(payload)]) + payload + b"\x80"
    escaped, zeros = bytearray(), 0
    for byte in rbsp:  # emulation prevention
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x06" + bytes(escaped)


def with_orientation_sei(source: Path, target: Path, anticlockwise_deg: int) -> Path:
    """Copy an H.264 MP4 (4-byte NAL lengths), putting a display orientation SEI in every access unit."""
    sei = display_orientation_sei(anticlockwise_deg)
    unit = len(sei).to_bytes(4, "big") + sei
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.size == 0:
                continue
            copied = av.Packet(unit + bytes(packet))
            copied.pts, copied.dts, copied.time_base = packet.pts, packet.dts, packet.time_base
            copied.is_keyframe = packet.is_keyframe
            copied.stream = out_stream
            out.mux(copied)
    return target


def sideways_plain_clip(folder: Path, frames: int = 25) -> Path:
    """The upright quadrant picture stored turned 90 degrees anticlockwise, without rotation metadata
    and without B-frames (streamed as a camera would)."""
    path = folder / "sideways.mp4"
    stored = cv2.rotate(quadrant_picture(), cv2.ROTATE_90_COUNTERCLOCKWISE)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"bf": "0", "g": "10", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="bgr24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def sideways_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sideways_plain_clip(tmp_path_factory.mktemp("sideways"))


@pytest.fixture(scope="module")
def sei_clip(sideways_clip: Path) -> Path:
    # Stored turned 90 degrees anticlockwise: the SEI recommends a 270 degree anticlockwise turn.
    return with_orientation_sei(sideways_clip, sideways_clip.with_name("sei.mp4"), 270)


def test_display_orientation_sei_turns_file_frames_upright(sei_clip: Path) -> None:
    with FileVideoSource(sei_clip) as source:
        assert source.orientation == Orientation(90)
        assert source.resolution_wh == UPRIGHT_WH
        frames = list(source.frames())
    assert len(frames) == 25
    for frame in frames:
        assert_upright_quadrants(frame.bgr)


# ---------------------------------------------------------------- RTSP
def rtsp_frames(config: RtspSourceConfig, count: int, timeout_s: float = 10.0) -> list[VideoFrame]:
    """The first `count` frames of an RTSP source; fewer if `timeout_s` passes first."""
    source = RtspVideoSource(config)
    watchdog = threading.Timer(timeout_s, source.close)
    watchdog.start()
    frames: list[VideoFrame] = []
    try:
        for frame in source.frames():
            frames.append(frame)
            if len(frames) >= count:
                break
    finally:
        watchdog.cancel()
        source.close()
    return frames


def rtsp_config(url: str, **fields: object) -> RtspSourceConfig:
    return RtspSourceConfig(url=url, open_timeout_s=5.0, read_timeout_s=5.0, reconnect_initial_s=0.05,
                            reconnect_max_s=0.2, **fields)


@pytest.fixture
def sideways_server(sideways_clip: Path) -> Iterator[RtspTestServer]:
    with RtspTestServer(sideways_clip, speed=4.0) as running:
        yield running


def test_rtsp_camera_configured_with_rotation_90_gives_upright_frames(sideways_server: RtspTestServer) -> None:
    frames = rtsp_frames(rtsp_config(sideways_server.url, rotation=90), count=3)
    assert len(frames) == 3
    for frame in frames:
        assert frame.resolution_wh == UPRIGHT_WH
        assert_upright_quadrants(frame.bgr)
    # Without the setting (and without metadata on the wire) the frames stay as the camera stores them.
    as_stored = rtsp_frames(rtsp_config(sideways_server.url), count=1)
    assert as_stored and as_stored[0].resolution_wh == (UPRIGHT_WH[1], UPRIGHT_WH[0])


def test_rtsp_display_orientation_sei_is_honoured(sei_clip: Path) -> None:
    with RtspTestServer(sei_clip, speed=4.0) as server:
        frames = rtsp_frames(rtsp_config(server.url), count=3)
    assert len(frames) == 3
    for frame in frames:
        assert_upright_quadrants(frame.bgr)


# ---------------------------------------------------------------- anonymizing a phone clip
def portrait_scene() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """An upright 360x640 portrait frame with the astronaut's face, and where her photo was placed."""
    scene = np.full((640, 360, 3), 90, np.uint8)
    scene[::16, :] = 200  # a ruled background, to check it comes out unchanged and upright
    photo = cv2.resize(sample_faces.astronaut_bgr(), (300, 300), interpolation=cv2.INTER_AREA)
    x0, y0 = 30, 120
    scene[y0:y0 + 300, x0:x0 + 300] = photo
    return scene, (x0, y0, x0 + 300, y0 + 300)


@pytest.mark.parametrize("rotation", [90, 270])
def test_anonymizing_a_sideways_phone_clip_gives_upright_output_with_the_face_masked(tmp_path: Path,
                                                                                      rotation: int) -> None:
    scene, photo_xyxy = portrait_scene()
    clip = write_rotated_clip([scene] * 6, tmp_path / "phone.mp4", rotation, 25)
    output = tmp_path / "masked.mp4"
    camera = CameraConfig(id="phone", source=FileSourceConfig(path=clip),
                          anonymizer=AnonymizerConfig(method="solid", solid_bgr=(255, 0, 255)))
    result = anonymize_video(clip, output, camera)
    assert result.stats is not None and result.stats.frames_out == 6
    assert result.faces >= 6  # one face per frame, found on the upright frames

    # The astronaut's face, located once on the upright scene: a known position in the displayed frame.
    x0, y0, _, _ = photo_xyxy
    face_x, face_y = x0 + 130, y0 + 70  # the middle of her face (CenterFace: 135-187 x 158-221)
    with av.open(str(output)) as container:
        first = next(container.decode(video=0))
        assert first.rotation == 0  # upright pixels, no rotation flag
    with FileVideoSource(output) as written:
        assert written.resolution_wh == (360, 640)
        frames = [frame.bgr for frame in written.frames()]
    assert len(frames) == 6
    for bgr in frames:
        assert np.abs(bgr[face_y, face_x].astype(int) - (255, 0, 255)).max() < 50, "face not masked"
        assert np.abs(bgr[600:630, 20:340].astype(int) - scene[600:630, 20:340]).mean() < 10, "background moved"


# ---------------------------------------------------------------- photos keep honouring EXIF orientation
def test_photo_with_exif_orientation_is_anonymized_upright(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image_module = pytest.importorskip("PIL.Image")
    scene, photo_xyxy = portrait_scene()
    folder = tmp_path / "photos"
    folder.mkdir()
    # A phone photo: pixels stored sideways, EXIF orientation 6 (turn 90 degrees clockwise to view).
    stored = cv2.rotate(scene, cv2.ROTATE_90_COUNTERCLOCKWISE)
    exif = image_module.Exif()
    exif[0x0112] = 6
    image_module.fromarray(stored[:, :, ::-1]).save(folder / "phone.jpg", quality=95, exif=exif)
    out_folder = tmp_path / "masked"
    code = main(["anonymize", str(folder), "-o", str(out_folder), "--method", "solid"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # The face, and with the robust detector weights one small false mask on the shuttle's fuel tank
    # (scored 0.41; models/centerface-robust.md).
    assert re.search(r"images written, [12] faces masked", captured.out), captured.out
    masked = cv2.imread(str(out_folder / "phone.jpg"))
    assert masked.shape == scene.shape  # upright, the way the photo is viewed
    x0, y0, _, _ = photo_xyxy
    assert masked[y0 + 70, x0 + 130].max() < 40, "face not masked"
    assert np.abs(masked[600:630, 20:340].astype(int) - scene[600:630, 20:340]).mean() < 10


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("model", [FileSourceConfig, RtspSourceConfig])
def test_rotation_setting_accepts_right_angles_and_auto(model: type) -> None:
    base = {"path": "clip.mp4"} if model is FileSourceConfig else {"url": "rtsp://camera/stream"}
    assert model(**base).rotation == "auto"
    for value in (0, 90, 180, 270, "auto"):
        assert model(**base, rotation=value).rotation == value
    for bad in (45, -90, 360, "90", "sideways", None, True):
        with pytest.raises(ValidationError):
            model(**base, rotation=bad)


def test_bad_rotation_in_a_config_file_names_its_line() -> None:
    text = """cameras:
  - id: lobby
    source:
      type: rtsp
      url: rtsp://10.0.0.5/stream1
      rotation: 45
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "camera.yaml")
    message = str(caught.value)
    assert message.startswith("camera.yaml:6: cameras.0.source.rotation:"), message
    assert "\n" not in message
    assert parse_config(text.replace("45", "90"), "camera.yaml").cameras[0].source.rotation == 90
