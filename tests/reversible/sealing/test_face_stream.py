"""Sealed face streams: 4:2:0 on the frame's chroma grid, close to the source's own planes, and
4:4:4 streams of earlier recordings still decoded."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from streamd.reversible.sealing.face_rate import FaceQuality
from streamd.reversible.sealing.face_stream import (
    FACE_PIXEL_FORMAT,
    FaceStreamDecoder,
    FaceStreamEncoder,
    bgr_to_yuv420,
    without_sei,
)


def _source_frames(count: int = 6, width: int = 96, height: int = 80) -> list[av.VideoFrame]:
    """yuv420p frames with texture, coloured shapes and motion, as a decoder would give them."""
    rng = np.random.default_rng(7)
    frames = []
    for index in range(count):
        bgr = np.zeros((height, width, 3), dtype=np.uint8)
        bgr[...] = (40 + index * 3, 120, 200 - index * 5)
        yy, xx = np.mgrid[0:height, 0:width]
        bgr[((yy - 40) ** 2 + (xx - 30 - 2 * index) ** 2) < 400] = (30, 180, 240)
        bgr = np.clip(bgr.astype(np.int16) + rng.integers(-6, 7, bgr.shape), 0, 255).astype(np.uint8)
        frames.append(av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p"))
    return frames


def _psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def test_bgr_to_yuv420_recovers_the_decoded_planes():
    frame = _source_frames(1)[0]
    stacked = frame.to_ndarray()
    luma, u_plane, v_plane = bgr_to_yuv420(frame.to_ndarray(format="bgr24"))
    assert luma.shape == (80, 96) and u_plane.shape == v_plane.shape == (40, 48)
    assert _psnr(stacked[:80], luma) > 45.0
    assert _psnr(stacked[80:100].reshape(40, 48), u_plane) > 45.0
    assert _psnr(stacked[100:].reshape(40, 48), v_plane) > 45.0


def test_odd_regions_decode_in_place_on_the_chroma_grid():
    encoder, decoder = FaceStreamEncoder((96, 80), FaceQuality(crf=4)), FaceStreamDecoder()
    for index, frame in enumerate(_source_frames()):
        bgr = frame.to_ndarray(format="bgr24")
        region = (13 + index, 9 + index, 61, 58 - index)  # odd and even starts, odd and even sizes
        x0, y0, x1, y1 = region
        packet = encoder.encode(bgr[y0:y1, x0:x1], index / 25, (x0, y0))
        canvas = decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
        assert canvas is not None and canvas.chroma_420
        planes = canvas.region(region)
        assert planes.shape == (3, y1 - y0, x1 - x0)
        source_luma = frame.to_ndarray()[:80]
        assert _psnr(source_luma[y0:y1, x0:x1], planes[0]) > 40.0, f"frame {index}: luma not where it belongs"
        u_source = frame.to_ndarray()[80:100].reshape(40, 48)
        ex0, ey0 = (x0 + 1) // 2 * 2, (y0 + 1) // 2 * 2  # first whole 2x2 block inside the region
        u_block = planes[1][ey0 - y0:ey0 - y0 + 2, ex0 - x0:ex0 - x0 + 2]
        assert (u_block == u_block[0, 0]).all(), "each 2x2 block of the canvas is one chroma sample"
        assert abs(int(u_block[0, 0]) - int(u_source[ey0 // 2, ex0 // 2])) <= 3


def test_a_shrinking_region_leaves_nothing_of_the_last_one_on_the_canvas():
    """The encoder refills one picture per part: where an earlier, larger region was, the canvas is grey
    again, and each frame decodes to its own region."""
    encoder, decoder = FaceStreamEncoder((96, 80), FaceQuality(crf=4)), FaceStreamDecoder()
    frames = _source_frames(5)
    regions = [(10, 8, 70, 64), (10, 8, 50, 40), (10, 8, 70, 44), (10, 8, 36, 64), (10, 8, 30, 30)]
    parts = set()
    for index, (frame, region) in enumerate(zip(frames, regions)):
        x0, y0, x1, y1 = region
        packet = encoder.encode(frame.to_ndarray(format="bgr24")[y0:y1, x0:x1], index / 25, (x0, y0))
        parts.add(packet.part)
        canvas = decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
        assert canvas is not None
        luma = canvas.planes[0]
        assert _psnr(frame.to_ndarray()[:80][y0:y1, x0:x1], canvas.region(region)[0]) > 40.0, f"frame {index}"
        outside = np.ones(luma.shape, dtype=bool)
        outside[:y1 - y0 + 2, :x1 - x0 + 2] = False  # the region, and the block edge the codec blends into it
        assert np.abs(luma[outside].astype(int) - 128).max() <= 4, f"frame {index}: an earlier region lingers"
    assert parts == {0}, "every region fits the first canvas, so one picture served them all"


def test_a_4_4_4_stream_of_an_earlier_recording_still_decodes():
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = 48, 32, "yuv444p"
    context.time_base = Fraction(1, 1000)
    context.options = {"crf": "0", "preset": "veryfast", "tune": "zerolatency", "x264-params": "bframes=0"}
    context.open()
    bgr = np.zeros((32, 48, 3), dtype=np.uint8)
    bgr[:, :19] = (0, 0, 255)
    frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
    frame.pts, frame.time_base = 0, Fraction(1, 1000)
    (packet,) = context.encode(frame)
    canvas = FaceStreamDecoder().decode(0, 0, True, bytes(packet))
    assert canvas is not None and not canvas.chroma_420
    planes = canvas.region((5, 3, 29, 19))  # an odd start: 4:4:4 regions sit at the canvas's corner
    assert planes.shape == (3, 16, 24)
    assert planes[2, 0, 18] > 200 and planes[2, 0, 19] < 160, "the red edge stays at column 19 of the canvas"
    assert FACE_PIXEL_FORMAT == "yuv420p"


def _nal_types(annex_b: bytes) -> list[int]:
    starts = [index for index in range(len(annex_b) - 3) if annex_b[index:index + 3] == b"\x00\x00\x01"]
    return [annex_b[start + 3] & 0x1F for start in starts]


def test_key_frames_carry_no_encoder_sei_and_still_decode():
    encoder, decoder = FaceStreamEncoder((96, 80)), FaceStreamDecoder()
    frames = _source_frames()
    first = None
    for index, frame in enumerate(frames):
        bgr = frame.to_ndarray(format="bgr24")
        packet = encoder.encode(bgr[8:72, 8:88], index / 25, (8, 8))
        first = first or packet
        assert 6 not in _nal_types(packet.data)
        canvas = decoder.decode(packet.part, packet.number, packet.keyframe, packet.data)
        assert canvas is not None and _psnr(frame.to_ndarray()[8:72, 8:88], canvas.region((8, 8, 88, 72))[0]) > 35.0
    assert first is not None and first.keyframe and _nal_types(first.data)[:2] == [7, 8] and 5 in _nal_types(first.data)


def test_without_sei_keeps_every_other_unit_as_it_is():
    units = [bytes([0x67, 1, 2, 3]), bytes([0x68, 9]), bytes([0x06, 5, 16]) + b"x264" * 10, bytes([0x65, 0, 0, 3, 1, 7])]
    packet = b"".join(b"\x00\x00\x00\x01" + unit for unit in units)
    assert without_sei(packet) == b"".join(b"\x00\x00\x00\x01" + unit for unit in units if unit[0] != 0x06)
    no_sei = b"\x00\x00\x01" + units[0] + b"\x00\x00\x01" + units[3]
    assert without_sei(no_sei) == no_sei
