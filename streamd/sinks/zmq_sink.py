"""ZeroMQ sink: frames and the stream's events (stream up/down, track start/end) for subscribers.

On a reversible stream (see `streamd.reversible.sealing.stream_sealer`) frames carry their sealed payloads as extra parts,
`track_start` events carry the new track's wrapped keys, and `track_keys` events repeat them.
"""

from __future__ import annotations

from streamd.config import ZmqOutputConfig
from streamd.sinks.publish import ZmqPublisher
from streamd.reversible.sealing.stream_sealer import SEALING_EXTRAS_KEY, SealedFrame
from streamd.sinks.base import FrameSink
from streamd.types import AnonymizedFrame


class ZmqSink(FrameSink):
    stage = "publish"

    def __init__(self, config: ZmqOutputConfig, camera_id: str, stream_epoch: str | None = None) -> None:
        self.publisher = ZmqPublisher(config, camera_id, stream_epoch=stream_epoch)
        self._announced = False
        self._last_frame: AnonymizedFrame | None = None

    @property
    def endpoint(self) -> str:
        return self.publisher.endpoint

    def _event(self, event_type: str, anonymized: AnonymizedFrame | None = None, **fields: object) -> None:
        if anonymized is not None:  # events carry the frame they happened at
            fields.update(frame_index=anonymized.frame.index, pts=anonymized.frame.pts,
                          time_base=anonymized.frame.time_base)
        self.publisher.publish_event(self.publisher.make_event(event_type, **fields))

    def write(self, anonymized: AnonymizedFrame) -> None:
        if not self._announced:
            width, height = anonymized.frame.resolution_wh
            self._event("stream_up", anonymized, details={"width": width, "height": height})
            self._announced = True
        sealing = anonymized.extras.get(SEALING_EXTRAS_KEY)
        if sealing is not None:
            assert isinstance(sealing, SealedFrame)
        started_keys = sealing.started_keys if sealing is not None else {}
        for track_id in anonymized.started:
            self._event("track_start", anonymized, track_id=track_id, wrapped_keys=started_keys.get(track_id))
        if sealing is not None:
            late_keys = {track_id: keys for track_id, keys in started_keys.items() if track_id not in anonymized.started}
            for track_id, keys in {**late_keys, **sealing.repeated_keys}.items():
                self._event("track_keys", anonymized, track_id=track_id, wrapped_keys=keys)
        if anonymized.status != "ok":
            self._event("error", anonymized, message="frame failed processing and was blanked")
        self.publisher.publish_frame(anonymized, payloads=sealing.payloads if sealing is not None else ())
        self._last_frame = anonymized
        for track_id in anonymized.ended:
            self._event("track_end", anonymized, track_id=track_id)

    def source_state(self, up: bool, reason: str) -> None:
        """Down: a `stream_down` event now; up: `stream_up` goes out with the next frame (it knows the size)."""
        if not up:
            self._event("stream_down", message=reason)
            self._announced = False

    def end_tracks(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self._event("track_end", self._last_frame, track_id=track_id)

    def finish(self) -> None:
        self._event("stream_down", message="end of stream")

    def abort(self) -> None:
        self._event("stream_down", message="stream failed")

    def close(self) -> None:
        self.publisher.close()
