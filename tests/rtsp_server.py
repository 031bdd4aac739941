"""A small RTSP server for tests: loops an H.264 file to clients on loopback over RTP/TCP.

RTSP (RFC 2326) with OPTIONS, DESCRIBE, SETUP (RTP/AVP/TCP interleaved only), PLAY,
GET_PARAMETER and TEARDOWN; H.264 carried in RTP per RFC 6184 (single NAL unit packets and FU-A
fragments), 90 kHz timestamps, paced in real time (or `speed` times faster). SPS and PPS go into the
SDP and are repeated before every IDR frame, as cameras do.

With `audio=True` the file's AAC audio is served too, as a second SDP media (track1, interleaved
channels 2-3): RFC 3640 ``mpeg4-generic`` in AAC-hbr mode (a 16-bit AU-headers-length, then one AU
header of a 13-bit size and a 3-bit index per packet), ``config=`` the AudioSpecificConfig from the
file's extradata, RTP clock = the sample rate. Audio packets timed before the first video frame or
after the end of the loop are left out, so the looped audio never overlaps itself.

Fault controls for tests: `stop()` closes every connection (clients see end of stream), `restart()`
serves again on the same port, `freeze()` keeps connections open but sends nothing, and
`inject_garbage(n)` corrupts the slice data of the next `n` RTP packets.
"""

from __future__ import annotations

import base64
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

RTP_CLOCK_HZ = 90_000
RTP_PAYLOAD_TYPE = 96
AUDIO_PAYLOAD_TYPE = 97
MAX_RTP_PAYLOAD = 1400
NAL_IDR, NAL_SPS, NAL_PPS, NAL_FU_A = 5, 7, 8, 28


def make_h264_clip(path: Path, width: int = 320, height: int = 240, fps: int = 25, seconds: float = 2.0,
                   gop: int = 10) -> Path:
    """Encode a moving test pattern with libx264 (no B-frames, keyframe every `gop` frames)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "bf": "0", "preset": "ultrafast",
                          "sc_threshold": "0"}
        columns, rows = np.meshgrid(np.arange(width), np.arange(height))
        for frame_index in range(int(seconds * fps)):
            bgr = np.stack([(columns + 4 * frame_index) % 256, (rows + 2 * frame_index) % 256,
                            np.full_like(columns, (9 * frame_index) % 256)], axis=-1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        container.mux(stream.encode(None))
    return path


def _split_annexb(data: bytes) -> list[bytes]:
    units = []
    for chunk in data.split(b"\x00\x00\x01"):
        chunk = chunk.rstrip(b"\x00")
        if chunk:
            units.append(chunk)
    return units


def _split_avcc(data: bytes, length_size: int) -> list[bytes]:
    units, offset = [], 0
    while offset + length_size <= len(data):
        size = int.from_bytes(data[offset:offset + length_size], "big")
        offset += length_size
        units.append(data[offset:offset + size])
        offset += size
    return units


def _parameter_sets(extradata: bytes) -> tuple[list[bytes], list[bytes], int]:
    """SPS list, PPS list and NAL length size (0 for Annex-B) from H.264 extradata."""
    if extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        units = _split_annexb(extradata)
        return ([u for u in units if u[0] & 0x1F == NAL_SPS], [u for u in units if u[0] & 0x1F == NAL_PPS], 0)
    length_size = (extradata[4] & 0x03) + 1
    offset, sps_list, pps_list = 6, [], []
    for _ in range(extradata[5] & 0x1F):
        size = int.from_bytes(extradata[offset:offset + 2], "big")
        sps_list.append(extradata[offset + 2:offset + 2 + size])
        offset += 2 + size
    pps_count, offset = extradata[offset], offset + 1
    for _ in range(pps_count):
        size = int.from_bytes(extradata[offset:offset + 2], "big")
        pps_list.append(extradata[offset + 2:offset + 2 + size])
        offset += 2 + size
    return sps_list, pps_list, length_size


class RtspTestServer:
    """Serve `media_path` (H.264 in MP4/MKV, with AAC audio when `audio`) at `url`, looping forever,
    from background threads."""

    def __init__(self, media_path: Path, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0,
                 audio: bool = False) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.host, self.port, self.speed = host, port, speed
        self.audio_config = b""
        self.audio_rate = self.audio_channels = 0
        self.audio_units: list[tuple[float, bytes]] = []  # (pts s from the first video frame, AAC frame)
        with av.open(str(media_path)) as container:
            video = container.streams.video[0]
            self.sps_list, self.pps_list, length_size = _parameter_sets(bytes(video.codec_context.extradata))
            time_base = video.time_base
            self.access_units: list[tuple[float, float, list[bytes]]] = []  # (send s, pts s, NAL units)
            for packet in container.demux(video):
                if packet.size == 0:
                    continue
                data = bytes(packet)
                units = _split_avcc(data, length_size) if length_size else _split_annexb(data)
                pts, dts = packet.pts, packet.dts if packet.dts is not None else packet.pts
                self.access_units.append((float(dts * time_base), float(pts * time_base), units))
            if not video.guessed_rate:
                raise ValueError(f"{media_path}: no frame rate, cannot pace the stream")
            frame_duration = float(1 / video.guessed_rate)
            first = self.access_units[0][0]
            self.loop_seconds = self.access_units[-1][0] - first + frame_duration
            if audio:
                self._load_audio(media_path, container, first)
        self.access_units = [(send - first, pts - first, units) for send, pts, units in self.access_units]
        self.connections_total = 0
        self._lock = threading.Lock()
        self._garbage_packets = 0
        self._running = threading.Event()
        self._unfrozen = threading.Event()
        self._unfrozen.set()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []

    def _load_audio(self, media_path: Path, container: av.container.InputContainer, first_video_s: float) -> None:
        if not container.streams.audio or container.streams.audio[0].codec_context.name != "aac":
            raise ValueError(f"{media_path}: audio=True needs an AAC audio stream")
        stream = container.streams.audio[0]
        self.audio_config = bytes(stream.codec_context.extradata)
        self.audio_rate, self.audio_channels = stream.sample_rate, stream.channels
        container.seek(0)
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            pts_s = float(packet.pts * stream.time_base) - first_video_s
            if 0 <= pts_s < self.loop_seconds:
                self.audio_units.append((pts_s, bytes(packet)))

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}/stream"

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running.set()
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        """Close the listener and every connection; clients see end of stream."""
        self._running.clear()
        self._unfrozen.set()
        while True:
            with self._lock:
                connections, self._connections = self._connections, []
                threads, self._threads = self._threads, []
            if not connections and not threads:
                break
            for connection in connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    logger.debug("connection already closed by the client")
                connection.close()
            for thread in threads:
                thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Keep connections open but send nothing until `unfreeze()`."""
        self._unfrozen.clear()

    def unfreeze(self) -> None:
        self._unfrozen.set()

    def inject_garbage(self, packets: int = 5) -> None:
        """Overwrite slice data bytes in the next `packets` RTP packets that carry slices."""
        with self._lock:
            self._garbage_packets += packets

    def __enter__(self) -> "RtspTestServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by stop()
            connection.settimeout(None)
            with self._lock:
                self._connections.append(connection)
                self.connections_total += 1
            logger.debug("client connected (%d so far)", self.connections_total)
            self._spawn(self._serve_connection, connection)

    def _serve_connection(self, connection: socket.socket) -> None:
        send_lock = threading.Lock()
        buffer = b""
        session_id = f"{random.getrandbits(31):08X}"
        try:
            while self._running.is_set():
                if buffer.startswith(b"$"):  # interleaved RTCP from the client
                    if len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">H", buffer[2:4])[0]:
                        buffer = buffer[4 + struct.unpack(">H", buffer[2:4])[0]:]
                        continue
                elif b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    if not self._answer(connection, send_lock, head.decode("latin-1"), session_id):
                        return
                    continue
                data = connection.recv(4096)
                if not data:
                    return
                buffer += data
        except OSError:
            return  # connection closed by stop() or by the client
        finally:
            connection.close()

    def _answer(self, connection: socket.socket, send_lock: threading.Lock, request: str, session_id: str) -> bool:
        lines = request.split("\r\n")
        method = lines[0].split(" ")[0]
        logger.debug("request %s", lines[0])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        extra, body = [], ""
        if method == "OPTIONS":
            extra.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN")
        elif method == "DESCRIBE":
            sps = self.sps_list[0]
            sprop = ",".join(base64.b64encode(unit).decode() for unit in self.sps_list + self.pps_list)
            body = (f"v=0\r\no=- 0 0 IN IP4 {self.host}\r\ns=streamd test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                    f"a=control:*\r\nm=video 0 RTP/AVP {RTP_PAYLOAD_TYPE}\r\n"
                    f"a=rtpmap:{RTP_PAYLOAD_TYPE} H264/{RTP_CLOCK_HZ}\r\n"
                    f"a=fmtp:{RTP_PAYLOAD_TYPE} packetization-mode=1;profile-level-id={sps[1:4].hex()};"
                    f"sprop-parameter-sets={sprop}\r\na=control:track0\r\n")
            if self.audio_units:
                pt = AUDIO_PAYLOAD_TYPE
                body += (f"m=audio 0 RTP/AVP {pt}\r\n"
                         f"a=rtpmap:{pt} mpeg4-generic/{self.audio_rate}/{self.audio_channels}\r\n"
                         f"a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
                         f"indexdeltalength=3;config={self.audio_config.hex()}\r\na=control:track1\r\n")
            extra += [f"Content-Base: {self.url}/", "Content-Type: application/sdp"]
        elif method == "SETUP":
            if "interleaved" not in headers.get("transport", ""):
                self._reply(connection, send_lock, 461, "Unsupported Transport", headers, [], "")
                return True
            channels = "2-3" if lines[0].split(" ")[1].rstrip("/").endswith("track1") else "0-1"
            extra += [f"Transport: RTP/AVP/TCP;unicast;interleaved={channels}", f"Session: {session_id};timeout=60"]
        elif method == "PLAY":
            extra += [f"Session: {session_id}", "Range: npt=0.000-"]
        elif method in ("GET_PARAMETER", "TEARDOWN"):
            extra.append(f"Session: {session_id}")
        else:
            self._reply(connection, send_lock, 501, "Not Implemented", headers, [], "")
            return True
        self._reply(connection, send_lock, 200, "OK", headers, extra, body)
        if method == "PLAY":
            self._spawn(self._stream, connection, send_lock)
        return method != "TEARDOWN"

    @staticmethod
    def _reply(connection: socket.socket, send_lock: threading.Lock, code: int, reason: str,
               headers: dict[str, str], extra: list[str], body: str) -> None:
        lines = [f"RTSP/1.0 {code} {reason}", f"CSeq: {headers.get('cseq', '0')}", *extra]
        if body:
            lines.append(f"Content-Length: {len(body.encode())}")
        with send_lock:
            connection.sendall(("\r\n".join(lines) + "\r\n\r\n" + body).encode())

    def _packets(self, units: list[bytes]) -> list[bytes]:
        """RTP payloads for one access unit: single NAL unit packets or FU-A fragments."""
        if units and any(unit[0] & 0x1F == NAL_IDR for unit in units):
            units = self.sps_list + self.pps_list + [u for u in units if u[0] & 0x1F not in (NAL_SPS, NAL_PPS)]
        payloads = []
        for unit in units:
            if len(unit) <= MAX_RTP_PAYLOAD:
                payloads.append(unit)
                continue
            indicator, nal_type, body = (unit[0] & 0xE0) | NAL_FU_A, unit[0] & 0x1F, unit[1:]
            chunks = [body[i:i + MAX_RTP_PAYLOAD - 2] for i in range(0, len(body), MAX_RTP_PAYLOAD - 2)]
            for chunk_index, chunk in enumerate(chunks):
                header = nal_type | (0x80 if chunk_index == 0 else 0) | (0x40 if chunk_index == len(chunks) - 1 else 0)
                payloads.append(bytes([indicator, header]) + chunk)
        return payloads

    def _corrupt(self, payload: bytes) -> bytes:
        nal_type = payload[1] & 0x1F if payload[0] & 0x1F == NAL_FU_A else payload[0] & 0x1F
        if nal_type not in (1, NAL_IDR) or len(payload) < 16:
            return payload
        with self._lock:
            if self._garbage_packets <= 0:
                return payload
            self._garbage_packets -= 1
        corrupted = bytearray(payload)
        for position in random.sample(range(4, len(payload)), min(32, len(payload) - 4)):
            corrupted[position] = random.getrandbits(8)
        return bytes(corrupted)

    def _timeline(self) -> list[tuple[float, float, list[bytes] | None, bytes]]:
        """One loop's sends in time order: (send s, pts s, NAL units or None, AAC frame)."""
        events = [(send_s, pts_s, units, b"") for send_s, pts_s, units in self.access_units]
        events += [(pts_s, pts_s, None, frame) for pts_s, frame in self.audio_units]
        return sorted(events, key=lambda event: event[0])

    def _video_frames(self, units: list[bytes], timestamp: int, ssrc: int, sequence: int) -> tuple[bytes, int]:
        payloads = self._packets(units)
        frames = []
        for payload_index, payload in enumerate(payloads):
            marker = 0x80 if payload_index == len(payloads) - 1 else 0
            rtp = struct.pack(">BBHII", 0x80, marker | RTP_PAYLOAD_TYPE, sequence, timestamp, ssrc)
            packet = rtp + self._corrupt(payload)
            frames.append(struct.pack(">BBH", ord("$"), 0, len(packet)) + packet)
            sequence = (sequence + 1) % 2**16
        return b"".join(frames), sequence

    @staticmethod
    def _audio_frame(frame: bytes, timestamp: int, ssrc: int, sequence: int) -> bytes:
        """One AAC frame per RTP packet, RFC 3640 AAC-hbr: 16 bits of AU headers, size << 3 | index 0."""
        rtp = struct.pack(">BBHII", 0x80, 0x80 | AUDIO_PAYLOAD_TYPE, sequence, timestamp, ssrc)
        packet = rtp + struct.pack(">HH", 16, len(frame) << 3) + frame
        return struct.pack(">BBH", ord("$"), 2, len(packet)) + packet

    def _stream(self, connection: socket.socket, send_lock: threading.Lock) -> None:
        sequence, ssrc, timestamp_base = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        audio_sequence, audio_ssrc, audio_base = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        timeline = self._timeline()
        started = time.monotonic()
        loop_index = 0
        try:
            while self._running.is_set():
                for send_s, pts_s, units, audio_frame in timeline:
                    offset_s = loop_index * self.loop_seconds
                    if not self._unfrozen.is_set():
                        self._unfrozen.wait()
                        started = time.monotonic() - (offset_s + send_s) / self.speed
                    delay = started + (offset_s + send_s) / self.speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if not self._running.is_set():
                        return
                    if units is None:
                        timestamp = (audio_base + round((offset_s + pts_s) * self.audio_rate)) % 2**32
                        data = self._audio_frame(audio_frame, timestamp, audio_ssrc, audio_sequence)
                        audio_sequence = (audio_sequence + 1) % 2**16
                    else:
                        timestamp = (timestamp_base + round((offset_s + pts_s) * RTP_CLOCK_HZ)) % 2**32
                        data, sequence = self._video_frames(units, timestamp, ssrc, sequence)
                    with send_lock:
                        connection.sendall(data)
                loop_index += 1
        except OSError:
            return  # connection closed by stop() or by the client
