"""A small RTSP server for tests that takes a pushed stream (ANNOUNCE, SETUP, RECORD), as MediaMTX or
go2rtc do when `ffmpeg -f rtsp` (or PyAV with format "rtsp") publishes to them.

RTSP (RFC 2326) over TCP with interleaved RTP (`RTP/AVP/TCP;interleaved=0-1;mode=record` only);
H.264 RTP payloads (RFC 6184: single NAL units, STAP-A and FU-A) are put back together into an
Annex B byte stream, `received_h264()`, that a decoder reads. One publisher at a time, loopback only.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading

logger = logging.getLogger(__name__)

START_CODE = b"\x00\x00\x00\x01"
NAL_STAP_A, NAL_FU_A = 24, 28


def rtp_payload(packet: bytes) -> bytes:
    """The payload of an RTP packet (fixed header, CSRCs and header extension skipped)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        raise ValueError("not an RTP version 2 packet")
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        extension_words = struct.unpack(">H", packet[offset + 2:offset + 4])[0]
        offset += 4 + 4 * extension_words
    end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
    return packet[offset:end]


class H264Depacketizer:
    """RFC 6184 payloads in, Annex B NAL units out."""

    def __init__(self) -> None:
        self.annex_b = bytearray()
        self._fragment: bytearray | None = None

    def push(self, payload: bytes) -> None:
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:
            self.annex_b += START_CODE + payload
        elif nal_type == NAL_STAP_A:
            offset = 1
            while offset + 2 <= len(payload):
                size = struct.unpack(">H", payload[offset:offset + 2])[0]
                self.annex_b += START_CODE + payload[offset + 2:offset + 2 + size]
                offset += 2 + size
        elif nal_type == NAL_FU_A:
            header = payload[1]
            if header & 0x80:  # start
                self._fragment = bytearray([(payload[0] & 0xE0) | (header & 0x1F)])
            if self._fragment is not None:
                self._fragment += payload[2:]
                if header & 0x40:  # end
                    self.annex_b += START_CODE + self._fragment
                    self._fragment = None
        else:
            logger.debug("RTP payload type %d ignored", nal_type)


class RtspRecordServer:
    """Accepts one published H.264 stream at rtsp://127.0.0.1:PORT/<any path>; see the module doc."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(4)
        self._listener.settimeout(0.1)
        self.host, self.port = host, self._listener.getsockname()[1]
        self.methods: list[str] = []
        self.sdp = ""
        self.rtp_packets = 0
        self._depacketizer = H264Depacketizer()
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._threads: list[threading.Thread] = []

    def url(self, path: str = "live") -> str:
        return f"rtsp://{self.host}:{self.port}/{path}"

    def received_h264(self) -> bytes:
        with self._lock:
            return bytes(self._depacketizer.annex_b)

    def __enter__(self) -> "RtspRecordServer":
        self._running.set()
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.clear()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while self._running.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(0.2)
            self._spawn(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        buffer = b""
        session_id = "5EC0DE"
        try:
            while self._running.is_set():
                if buffer.startswith(b"$"):
                    if len(buffer) >= 4:
                        channel, size = buffer[1], struct.unpack(">H", buffer[2:4])[0]
                        if len(buffer) >= 4 + size:
                            packet, buffer = buffer[4:4 + size], buffer[4 + size:]
                            if channel == 0:
                                self._on_rtp(packet)
                            continue
                elif b"\r\n\r\n" in buffer:
                    head, rest = buffer.split(b"\r\n\r\n", 1)
                    headers = self._headers(head.decode("latin-1"))
                    length = int(headers.get("content-length", "0"))
                    if len(rest) >= length:
                        body, buffer = rest[:length].decode("latin-1"), rest[length:]
                        if not self._answer(connection, head.decode("latin-1"), headers, body, session_id):
                            return
                        continue
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                buffer += data
        except OSError:
            return
        finally:
            connection.close()

    @staticmethod
    def _headers(head: str) -> dict[str, str]:
        lines = head.split("\r\n")
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    def _on_rtp(self, packet: bytes) -> None:
        with self._lock:
            self.rtp_packets += 1
            self._depacketizer.push(rtp_payload(packet))

    def _answer(self, connection: socket.socket, head: str, headers: dict[str, str], body: str,
                session_id: str) -> bool:
        method = head.split(" ", 1)[0]
        self.methods.append(method)
        extra: list[str] = []
        code, reason = 200, "OK"
        if method == "OPTIONS":
            extra.append("Public: OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN")
        elif method == "ANNOUNCE":
            self.sdp = body
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "interleaved" not in transport or "mode=record" not in transport.lower():
                code, reason = 461, "Unsupported Transport"
            else:
                extra += [f"Transport: {transport}", f"Session: {session_id};timeout=60"]
        elif method in ("RECORD", "TEARDOWN", "GET_PARAMETER"):
            extra.append(f"Session: {session_id}")
        else:
            code, reason = 501, "Not Implemented"
        lines = [f"RTSP/1.0 {code} {reason}", f"CSeq: {headers.get('cseq', '0')}", *extra]
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return method != "TEARDOWN"
