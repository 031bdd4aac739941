"""Join segment files into one video by copying their packets in order: no decoding, no re-encoding.

Every segment was encoded with the same settings, frame size and time base and starts with a key
frame, so the joined stream decodes as one; its packets keep their timestamps, so the joined file has
the frames and timestamps of the input. The join is written to a temporary file beside the target
and moved into place at the end, so a target exists only complete.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import av

from streamd.errors import SinkError
from streamd.sinks.video_out import CONTAINER_FORMATS

logger = logging.getLogger(__name__)


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.stem}.joining-{secrets.token_hex(4)}{path.suffix}")


def _decode_timestamp(dts: int | None, pts: int | None, last_dts: int | None) -> int | None:
    """A dts that never goes back: Matroska stores none for reordered frames, and each segment's
    encoder starts its own dts a few frames before its first pts."""
    if dts is None:
        dts = pts if last_dts is None else last_dts
    if last_dts is not None and dts is not None and dts < last_dts:
        dts = last_dts
    return dts


def join_segments(segment_paths: Sequence[Path], output_path: Path) -> int:
    """Copy the video packets of `segment_paths`, in order, into `output_path`; the number of packets."""
    if not segment_paths:
        raise SinkError(f"{output_path}: no segments to join")
    suffix = output_path.suffix.lower()
    if suffix not in CONTAINER_FORMATS:
        raise SinkError(f"{output_path}: output video must end in .mkv or .mp4")
    temporary = _temporary_sibling(output_path)
    packets_written = 0
    try:
        with av.open(str(segment_paths[0])) as first, \
                av.open(str(temporary), mode="w", format=CONTAINER_FORMATS[suffix]) as output:
            template = first.streams.video[0]
            size_wh = (template.codec_context.width, template.codec_context.height)
            out_stream = output.add_stream_from_template(template)
            out_stream.time_base = template.time_base
            last_dts: int | None = None
            for segment_path in segment_paths:
                with av.open(str(segment_path)) as segment:
                    stream = segment.streams.video[0]
                    if (stream.codec_context.width, stream.codec_context.height) != size_wh:
                        raise SinkError(f"{segment_path}: frame size differs from the first segment")
                    for packet in segment.demux(stream):
                        if packet.size == 0:
                            continue
                        if packet.time_base != out_stream.time_base:
                            packet.rescale_ts(out_stream.time_base)
                        packet.dts = _decode_timestamp(packet.dts, packet.pts, last_dts)
                        last_dts = packet.dts
                        packet.stream = out_stream
                        output.mux(packet)
                        packets_written += 1
        os.replace(temporary, output_path)
    except (OSError, av.FFmpegError) as exc:
        temporary.unlink(missing_ok=True)
        raise SinkError(f"{output_path}: cannot join segments: {exc}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    logger.info("joined %d segments into %s: %d frames", len(segment_paths), output_path, packets_written)
    return packets_written
