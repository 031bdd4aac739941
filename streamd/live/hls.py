"""HLS of one camera: H.264 in MPEG-TS segments, cut and listed by FFmpeg's hls muxer through PyAV.

Encoding starts at the first playlist request and stops `idle_stop_s` after the last request, so a
camera nobody watches costs nothing. Frames are taken from the camera's `LiveFeed` as they come
(a slow encoder skips frames, it never holds up the pipeline), timestamped by the wall clock at
which the pipeline put them out, and a keyframe is forced every `hls_segment_s` so that segments
have that length. Segments and playlist live in a private temporary folder that is removed when
encoding stops.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av

from streamd.config import LiveOutputConfig
from streamd.live.feed import LiveFeed, LiveFrame, scaled_even

logger = logging.getLogger(__name__)

PLAYLIST_NAME = "index.m3u8"
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_CONTENT_TYPE = "video/mp2t"
SEGMENT_NAME = re.compile(r"^seg[0-9]{1,9}\.ts$")
TIME_BASE = Fraction(1, 90_000)
#: Frame rate x264 plans its rate control for; real timestamps come from the wall clock.
NOMINAL_FPS = 25
WAIT_SLICE_S = 0.25


class HlsStream:
    """On-demand HLS encoder of one camera (see the module doc). Thread-safe."""

    def __init__(self, feed: LiveFeed, config: LiveOutputConfig) -> None:
        self.feed = feed
        self.config = config
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._last_request = 0.0
        self._stop = threading.Event()
        self._log = logger.getChild(feed.camera_id)

    # ------------------------------------------------------------ requests (HTTP threads)
    def _touch(self) -> Path | None:
        """Note a request; start encoding if it is not running. The folder segments go to; None once closed."""
        with self._lock:
            if self._stop.is_set():
                return None
            self._last_request = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._folder = Path(tempfile.mkdtemp(prefix=f"streamd-hls-{self.feed.camera_id}-"))
                self._thread = threading.Thread(target=self._run, args=(self._folder,),
                                                name=f"hls-{self.feed.camera_id}", daemon=True)
                self._thread.start()
            assert self._folder is not None
            return self._folder

    def playlist(self, wait_s: float) -> bytes | None:
        """The playlist, waiting up to `wait_s` for the first segment after a start; None if there is none yet."""
        deadline = time.monotonic() + wait_s
        while True:
            folder = self._touch()
            if folder is None:
                return None
            try:
                return (folder / PLAYLIST_NAME).read_bytes()
            except FileNotFoundError:
                if time.monotonic() >= deadline or self._stop.is_set():
                    return None
                time.sleep(0.05)

    def segment(self, name: str) -> bytes | None:
        """A listed segment's bytes; None for a name that is not a segment or is gone."""
        if not SEGMENT_NAME.match(name):
            return None
        folder = self._touch()
        if folder is None:
            return None
        try:
            return (folder / name).read_bytes()
        except FileNotFoundError:
            return None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    # ------------------------------------------------------------ encoder thread
    def _idle(self) -> bool:
        return time.monotonic() - self._last_request > self.config.idle_stop_s

    def _run(self, folder: Path) -> None:
        self._log.info("HLS encoding started for camera %s", self.feed.camera_id)
        try:
            self._encode(folder)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._log.error("HLS encoding of camera %s failed: %s", self.feed.camera_id, exc)
        finally:
            with self._lock:
                if self._folder == folder:
                    self._folder = None
            shutil.rmtree(folder, ignore_errors=True)
            self._log.info("HLS encoding stopped for camera %s", self.feed.camera_id)

    def _open(self, folder: Path, width: int, height: int) -> tuple[av.container.OutputContainer, av.VideoStream]:
        options = {
            "hls_time": f"{self.config.hls_segment_s:g}",
            "hls_list_size": str(self.config.hls_list_size),
            "hls_flags": "delete_segments+temp_file+omit_endlist+independent_segments+program_date_time",
            "hls_segment_filename": str(folder / "seg%d.ts"),
            "hls_allow_cache": "0",
        }
        container = av.open(str(folder / PLAYLIST_NAME), "w", format="hls", options=options)
        stream = container.add_stream("libx264", rate=NOMINAL_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": str(self.config.hls_crf),
                          "forced-idr": "1", "g": "100000", "threads": "1",
                          # the pixels are converted with BT.709; say so, or players guess (often BT.601)
                          "x264-params": "colorprim=bt709:transfer=bt709:colormatrix=bt709"}
        return container, stream

    def _encode(self, folder: Path) -> None:
        container: av.container.OutputContainer | None = None
        stream: av.VideoStream | None = None
        size: tuple[int, int] | None = None
        sequence = 0
        first_wallclock = 0.0
        last_pts = -1
        last_key_s = float("-inf")
        try:
            while not self._stop.is_set() and not self._idle():
                frame: LiveFrame | None = self.feed.wait_newer(sequence, WAIT_SLICE_S)
                if frame is None:
                    if self.feed.closed:
                        return
                    continue
                sequence = frame.sequence
                picture = scaled_even(frame.bgr, self.config.max_width)
                if size is None:
                    size = (picture.shape[1], picture.shape[0])
                    container, stream = self._open(folder, *size)
                    first_wallclock = frame.wallclock
                elif (picture.shape[1], picture.shape[0]) != size:
                    self._log.warning("camera %s changed resolution; restarting its HLS stream", self.feed.camera_id)
                    return
                assert container is not None and stream is not None
                seconds = frame.wallclock - first_wallclock
                video_frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(
                    format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                video_frame.pts = max(last_pts + 1, int(round(seconds / TIME_BASE)))
                video_frame.time_base = TIME_BASE
                last_pts = video_frame.pts
                if seconds - last_key_s >= self.config.hls_segment_s:
                    video_frame.pict_type = av.video.frame.PictureType.I
                    last_key_s = seconds
                container.mux(stream.encode(video_frame))
        finally:
            if container is not None:
                assert stream is not None
                try:
                    container.mux(stream.encode(None))
                finally:
                    container.close()
