"""Copy H.264 packets from a live HLS playlist to an RTSP server (ANNOUNCE/RECORD), like
`ffmpeg -i PLAYLIST -c copy -f rtsp -rtsp_transport tcp RTSP_URL`, with PyAV (the same libavformat).

Run as its own process (`python hls_to_rtsp.py PLAYLIST RTSP_URL PACKETS`): PyAV holds the GIL while it
reads, so it must not share a process with the HTTP server it reads from. Prints the packets copied.
"""

from __future__ import annotations

import sys

import av


def push(playlist_url: str, rtsp_url: str, packets: int) -> int:
    copied = 0
    with av.open(playlist_url, options={"rw_timeout": "15000000"}, timeout=15) as source:
        video_in = source.streams.video[0]
        with av.open(rtsp_url, "w", format="rtsp", options={"rtsp_transport": "tcp"}) as target:
            video_out = target.add_stream_from_template(video_in)
            for packet in source.demux(video_in):
                if packet.dts is None:
                    continue
                packet.stream = video_out
                target.mux(packet)
                copied += 1
                if copied >= packets:
                    break
    return copied


if __name__ == "__main__":
    sys.stdout.write(f"{push(sys.argv[1], sys.argv[2], int(sys.argv[3]))}\n")
