"""A live camera's audio, handed from the source's reader thread to the file outputs beside the frames.

The audio does not ride on the frames: the pipeline drops frames when it falls behind (and on
processing errors), and the audio must not go with them. Instead the source publishes every audio
packet into a `LiveAudioFeed`, with timestamps already rebased onto the frames' clock, and each file
output subscribes before the first frame arrives and takes, before it writes a frame, the packets
that start up to that frame's time (`AudioSubscription.take_until`). A subscription holds at most
`MAX_BUFFERED_S` of audio beyond what its output has taken (an output that stalls loses the oldest,
counted and logged once); the feed holds nothing when no output subscribes.

Packets are never decoded. `AudioParameters` describe the stream (codec, sample rate, channel
layout, extradata) so that an output can declare it when it opens; `template` is a detached stream
carrying those parameters, for `add_stream_from_template`. A later connection whose audio differs
(another codec, rate or layout) is a different stream: its packets are not passed to outputs
opened for the first one (they are dropped, with one warning per subscription).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av

logger = logging.getLogger(__name__)

#: The most audio (seconds) a subscription buffers beyond what its output has taken.
MAX_BUFFERED_S = 20.0


@dataclass(frozen=True)
class AudioParameters:
    """What an output needs to declare a passed-through audio stream (`extradata`: e.g. an AAC
    AudioSpecificConfig; empty when the codec has none)."""

    codec_name: str
    sample_rate: int
    channels: int
    layout: str
    extradata: bytes
    time_base: Fraction

    def describe(self) -> str:
        return f"{self.codec_name} {self.sample_rate} Hz {self.layout or f'{self.channels} ch'}"


class AudioTrack:
    """One connection's audio stream: its parameters and a detached template stream that stays valid
    after the connection closes (built in an in-memory Matroska container that is never written)."""

    def __init__(self, stream: av.audio.stream.AudioStream) -> None:
        context = stream.codec_context
        self.parameters = AudioParameters(
            codec_name=context.name, sample_rate=int(stream.sample_rate or 0), channels=int(stream.channels or 0),
            layout=context.layout.name if context.layout is not None else "",
            extradata=bytes(context.extradata or b""), time_base=Fraction(stream.time_base),
        )
        self.frame_size = int(context.frame_size or 0)
        self._holder = av.open(io.BytesIO(), mode="w", format="matroska")
        try:
            self.template = self._holder.add_stream_from_template(stream)
        except (ValueError, av.FFmpegError):
            self._holder.close()
            raise


@dataclass(frozen=True)
class LiveAudioPacket:
    """One audio packet with its rebased timestamps (in `track.parameters.time_base`)."""

    data: bytes
    pts: int
    duration: int
    track: AudioTrack

    @property
    def start_s(self) -> Fraction:
        return self.pts * self.track.parameters.time_base

    def to_av_packet(self) -> av.Packet:
        packet = av.Packet(self.data)
        packet.time_base = self.track.parameters.time_base
        packet.pts = packet.dts = self.pts
        packet.duration = self.duration
        return packet


class AudioSubscription:
    """One output's queue of audio packets, filled by the feed, drained by `take_until`."""

    def __init__(self, feed: "LiveAudioFeed", name: str) -> None:
        self.name = name
        self.packets_dropped = 0
        self.packets_skipped = 0
        self._feed = feed
        self._lock = threading.Lock()
        self._packets: deque[LiveAudioPacket] = deque()
        self._track: AudioTrack | None = None
        self._overflow_logged = False
        self._mismatch_logged = False

    @property
    def track(self) -> AudioTrack | None:
        """The audio stream this subscription passes on: the feed's current one until `lock_track`."""
        return self._track if self._track is not None else self._feed.track

    def lock_track(self) -> AudioTrack | None:
        """Fix the audio stream the output declares (called when it opens); later packets of another
        stream are skipped."""
        self._track = self._feed.track
        return self._track

    def _offer(self, packet: LiveAudioPacket) -> None:
        with self._lock:
            self._packets.append(packet)
            limit = packet.start_s - Fraction(MAX_BUFFERED_S)
            while self._packets and self._packets[0].start_s < limit:
                self._packets.popleft()
                self.packets_dropped += 1
                if not self._overflow_logged:
                    self._overflow_logged = True
                    logger.warning("%s: output fell %g s behind the camera's audio; dropping the oldest audio",
                                   self.name, MAX_BUFFERED_S)

    def discard_before(self, seconds: Fraction) -> None:
        """Drop the packets that start before `seconds` (audio from before the output's first frame)."""
        with self._lock:
            while self._packets and self._packets[0].start_s < seconds:
                self._packets.popleft()

    def take_until(self, seconds: Fraction) -> list[LiveAudioPacket]:
        """The packets that start at or before `seconds`, in order, removed from the queue; packets of
        another stream than the locked one are skipped."""
        taken: list[LiveAudioPacket] = []
        with self._lock:
            while self._packets and self._packets[0].start_s <= seconds:
                taken.append(self._packets.popleft())
        kept = [packet for packet in taken if self._track is None or packet.track is self._track]
        if len(kept) < len(taken):
            self.packets_skipped += len(taken) - len(kept)
            if not self._mismatch_logged:
                self._mismatch_logged = True
                logger.warning("%s: the camera's audio changed to %s after a reconnect; the output keeps %s and "
                               "leaves the new audio out", self.name, taken[-1].track.parameters.describe(),
                               self._track.parameters.describe() if self._track else "none")
        return kept

    def close(self) -> None:
        self._feed._unsubscribe(self)
        with self._lock:
            self._packets.clear()


class LiveAudioFeed:
    """Fans a live source's audio packets out to the subscribed outputs (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[AudioSubscription] = []
        self._track: AudioTrack | None = None
        self.packets_published = 0

    @property
    def track(self) -> AudioTrack | None:
        """The current connection's audio stream (None while unknown or when the camera has none)."""
        return self._track

    def set_track(self, track: AudioTrack | None) -> None:
        self._track = track

    def subscribe(self, name: str) -> AudioSubscription:
        subscription = AudioSubscription(self, name)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: AudioSubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def publish(self, packet: LiveAudioPacket) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription._offer(packet)
        self.packets_published += 1
