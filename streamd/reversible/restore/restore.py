"""The privileged restore path: put original faces back into a recording, for chosen tracks and a span.

`restore_recording` reads a recording (docs/recording.md), or several consecutive segments of one
camera's stream epoch joined into one output, unwraps the track keys of the selected tracks with a
restore private key, and writes a copy of the video in which those tracks' faces are restored inside
the span and every other face stays anonymized. Where a restored face's region
overlaps the region of a face that is not restored, the overlap stays anonymized.

Signed recordings (format version 2) are checked first against the pinned host keys
(`streamd.reversible.recording.authenticity`): anything unsigned, signed by an unknown host, altered,
reordered or with records or segments missing is refused, or with `partial` left out and reported.
Unsigned version 1 recordings restore only with `allow_unsigned`, and are reported as unauthenticated.

How a face is restored is a `FaceRestorer`: `FaceStreamRestorer` decodes the track's sealed face
stream, `SealedPayloadRestorer` opens the sealed PNG crops of version 1 files; a neural restorer (the SDN decoder, keyed by the track's password, or the CycleGAN's F)
plugs in through `NEURAL_RESTORERS`, keyed by anonymization method.

The restored video keeps the recording's audio (copied unchanged, in sync; signed recordings' audio is
checked like the video first) unless `audio` is off. The output holds every frame of the recording
(the span only chooses which faces are restored), so it holds all of its audio too.

Every run writes a keyed `started` entry to the audit log (`streamd.reversible.audit.audit_log`) with who, what
and why before any payload is opened, and a `finished` entry with the outcome. The output is written
privately (`streamd.reversible.restore.outputs`, mode 0600) and appears only when complete; a failure leaves
nothing, and what a killed run left is removed by the next one.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamd.errors import StreamdError
from streamd.hashing import file_sha256
from streamd.reversible.audit.audit_log import EVENT_STARTED, AuditContext, append_audit_entry
from streamd.reversible.recording.authenticity import AuthenticityError, Verification, check_segment_order, verify_recording
from streamd.reversible.keys.host_keys import TrustStore
from streamd.reversible.keys.restore_keys import (
    RestorePrivateKey,
    derive_audit_key,
    load_private_key,
    track_key_context,
    unwrap_track_key,
)
from streamd.reversible.restore.outputs import PrivateOutput
from streamd.reversible.recording.recording_format import FrameRecord, Recording, RecordingError, decode_video, read_recording
from streamd.reversible.restore.restored_video import RESTORE_PRESET, RestoredVideoWriter
from streamd.reversible.restore.restorers import (  # noqa: F401  (FaceRestorer, NEURAL_RESTORERS: the public API)
    NEURAL_RESTORERS,
    RESTORE_MODES,
    FaceRestorer,
    FaceStreamRestorer,
    RestoredFace,
    RestoreError,
    build_restorer,
    frame_size,
)
from streamd.reversible.sealing.stream_sealer import SEALED_FACE_KIND, SEALED_FACE_PACKET_KIND
from streamd.reversible.restore.yuv_composite import paste_yuv420

logger = logging.getLogger(__name__)

AUDIT_ACTION = "restore"
AUDIT_LOG_NAME = "audit.jsonl"
# The restored video's constant quantizer. Under CRF (8 before) x264 coded the first P frames of the output
# coarsely (about 40 KB against 90 KB a frame later on, without lookahead at preset ultrafast), which cost
# the faces restored there up to 1.3 dB; QP 2 holds every frame alike, at fewer bytes (a restored
# 8 s crowd clip 7.6 against 8.1 MB).
DEFAULT_RESTORE_QP = 2
SEALED_KINDS = (SEALED_FACE_KIND, SEALED_FACE_PACKET_KIND)
EXIT_PARTIAL = 3
# A decoded frame and its record belong together when their times differ by less than this.
PTS_MATCH_TOLERANCE_S = 0.002


def default_audit_log_path() -> Path:
    """`$XDG_STATE_HOME/streamd/audit.jsonl`, or `~/.local/state/streamd/audit.jsonl`."""
    state_home = os.environ.get("XDG_STATE_HOME")
    base = Path(state_home) if state_home else Path.home() / ".local" / "state"
    return base / "streamd" / AUDIT_LOG_NAME


@dataclass(frozen=True)
class RestoreRequest:
    input_path: Path
    output_path: Path
    key_path: Path
    passphrase: bytes | None = None
    tracks: frozenset[int] | None = None
    from_s: float | None = None
    to_s: float | None = None
    mode: str = "sealed"
    partial: bool = False
    expect_camera: str | None = None
    audit_log_path: Path | None = None
    qp: int = DEFAULT_RESTORE_QP
    #: Why the footage is restored (case, warrant, request): written to the audit log before anything is opened.
    reason: str | None = None
    #: Replace an existing output file.
    force: bool = False
    #: Write the restored video 4:4:4 and lossless (large; most players cannot play it) instead of yuv420p.
    lossless: bool = False
    #: Restore an unsigned (format version 1) recording; it is reported as unauthenticated.
    allow_unsigned: bool = False
    #: Folder of pinned host public keys (default: `streamd.reversible.keys.host_keys.default_trust_store`).
    trusted_hosts: Path | None = None
    #: Further segments of the same camera and stream epoch, restored into the same output in time order.
    more_inputs: tuple[Path, ...] = ()
    #: Copy the recording's audio into the output (unchanged, in sync).
    audio: bool = True

    @property
    def input_paths(self) -> tuple[Path, ...]:
        return (self.input_path, *self.more_inputs)


@dataclass
class RestoreResult:
    output_path: Path
    frames_written: int
    faces_restored: int
    tracks_restored: list[int]
    problems: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "partial" if self.problems else "ok"


@dataclass(frozen=True)
class TrackSummary:
    """What `--list` shows for one track: span (seconds from the file's first frame), frames, payloads."""

    track_id: int
    first_s: float
    last_s: float
    frames: int
    payloads: int
    key_ids: tuple[str, ...]


# ---------------------------------------------------------------- listing
def list_tracks(input_path: Path | str) -> tuple[Recording, list[TrackSummary]]:
    """The tracks of a recording with their spans; needs no key."""
    recording = read_recording(input_path)
    by_track: dict[int, list[float]] = {}
    payload_counts: dict[int, int] = {}
    for record in recording.records:
        seconds = recording.seconds_of(record)
        for face in record.document["faces"]:
            by_track.setdefault(int(face["track_id"]), []).append(seconds)
        for descriptor in record.payload_descriptors:
            if descriptor.get("kind") in SEALED_KINDS:
                track_id = int(descriptor["track_id"])
                payload_counts[track_id] = payload_counts.get(track_id, 0) + 1
    summaries = [
        TrackSummary(
            track_id=track_id, first_s=min(times), last_s=max(times), frames=len(times),
            payloads=payload_counts.get(track_id, 0),
            key_ids=tuple(sorted({str(entry.get("key_id")) for entry in recording.wrapped_keys.get(track_id, [])})),
        )
        for track_id, times in sorted(by_track.items())
    ]
    return recording, summaries


# ---------------------------------------------------------------- restoring
def _in_span(seconds: float, from_s: float | None, to_s: float | None) -> bool:
    return (from_s is None or seconds >= from_s) and (to_s is None or seconds <= to_s)


def _face_regions(record: FrameRecord) -> dict[int, list[tuple[int, int, int, int]]]:
    """Every face's changed region by track id: from its payload descriptor, else its box rounded outwards."""
    regions: dict[int, list[tuple[int, int, int, int]]] = {}
    described: set[int] = set()
    for descriptor in record.payload_descriptors:
        if descriptor.get("kind") in SEALED_KINDS and "region_xyxy" in descriptor:
            track_id = int(descriptor["track_id"])
            regions.setdefault(track_id, []).append(tuple(int(v) for v in descriptor["region_xyxy"]))  # type: ignore[arg-type]
            described.add(track_id)
    for face in record.document["faces"]:
        track_id = int(face["track_id"])
        if track_id not in described:
            x0, y0, x1, y1 = face["xyxy"]
            regions.setdefault(track_id, []).append((int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))))
    return regions


def composite_restored(
    anonymized_bgr: np.ndarray, restored: Sequence[RestoredFace], protected_regions: Sequence[tuple[int, int, int, int]],
    origin_xy: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """`anonymized_bgr` with each restored face pasted, except on pixels inside any protected region or
    outside the pixels a face owns. `anonymized_bgr` may be a patch of the frame whose top-left corner
    is at `origin_xy`; faces are clipped to it."""
    out = anonymized_bgr.copy()
    height, width = out.shape[:2]
    ox, oy = origin_xy
    protected = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in protected_regions:
        protected[max(0, y0 - oy):max(0, y1 - oy), max(0, x0 - ox):max(0, x1 - ox)] = True
    for face in restored:
        x0, y0, x1, y1 = face.region_xyxy
        px0, py0, px1, py1 = max(x0, ox), max(y0, oy), min(x1, ox + width), min(y1, oy + height)
        if px1 <= px0 or py1 <= py0:
            continue
        crop = face.as_bgr()[py0 - y0:py1 - y0, px0 - x0:px1 - x0]
        keep = ~protected[py0 - oy:py1 - oy, px0 - ox:px1 - ox]
        if face.mask is not None:
            keep &= face.mask[py0 - y0:py1 - y0, px0 - x0:px1 - x0]
        out[py0 - oy:py1 - oy, px0 - ox:px1 - ox][keep] = crop[keep]
    return out


def _select_tracks(request: RestoreRequest, segments: "Segments") -> list[int]:
    present: set[int] = set()
    all_tracks: set[int] = set()
    for recording in segments.recordings:
        for record in recording.records:
            tracks = {int(face["track_id"]) for face in record.document["faces"]}
            all_tracks.update(tracks)
            if _in_span(segments.seconds_of(record), request.from_s, request.to_s):
                present.update(tracks)
    if request.tracks is None:
        if not present:
            raise RestoreError(f"{segments.label}: no face appears in the selected span")
        return sorted(present)
    unknown = sorted(request.tracks - all_tracks)
    if unknown:
        raise RestoreError(f"track(s) {', '.join(map(str, unknown))} not in {segments.label} "
                           f"(tracks present: {', '.join(map(str, sorted(all_tracks))) or 'none'})")
    outside = sorted(request.tracks - present)
    if outside:
        raise RestoreError(f"track(s) {', '.join(map(str, outside))} do not appear in the selected span")
    return sorted(request.tracks)


def _unwrap_keys(
    segments: "Segments", track_ids: Sequence[int], private_key: RestorePrivateKey, partial: bool, problems: list[str]
) -> dict[int, bytes]:
    track_keys: dict[int, bytes] = {}
    first = segments.recordings[0]
    for track_id in track_ids:
        wrapped = next((recording.wrapped_keys[track_id] for recording in segments.recordings
                        if recording.wrapped_keys.get(track_id)), None)
        try:
            if not wrapped:
                raise RestoreError(f"{segments.label}: no wrapped key for track {track_id} "
                                   "(the recording started after the track and before its keys repeated, or was cut)")
            context = track_key_context(first.camera, first.stream_epoch, track_id)
            track_keys[track_id] = unwrap_track_key(wrapped, private_key, context)
        except StreamdError as exc:
            if not partial:
                raise
            problems.append(f"track {track_id}: {exc}")
    if not track_keys:
        raise RestoreError(f"no selected track could be unlocked: {problems[0] if problems else 'nothing selected'}")
    return track_keys


def _check_recording(request: RestoreRequest, recording: Recording, problems: list[str]) -> None:
    if request.expect_camera is not None and recording.camera != request.expect_camera:
        raise RestoreError(f"{recording.path} is from camera {recording.camera!r}, "
                           f"not the expected camera {request.expect_camera!r}")
    if recording.problems:
        message = f"{recording.path}: truncated or damaged recording: {'; '.join(recording.problems)}"
        if not request.partial:
            raise RecordingError(message)
        problems.append(message)
    methods = {str(record.document["method"]) for record in recording.records}
    if len(methods) > 1:
        raise RecordingError(f"{recording.path}: mixes anonymization methods {', '.join(sorted(methods))}")


@dataclass(frozen=True)
class Segments:
    """The recordings of one restore in time order; seconds count from the first frame of the first."""

    recordings: tuple[Recording, ...]

    @classmethod
    def join(cls, recordings: Sequence[Recording]) -> "Segments":
        """Check that the recordings are one camera's stream epoch, in non-overlapping time ranges."""
        if not recordings:
            raise RestoreError("no recording to restore")
        ordered = sorted(recordings, key=lambda recording: recording.first_seconds)
        first = ordered[0]
        for recording in ordered[1:]:
            if (recording.camera, recording.stream_epoch) != (first.camera, first.stream_epoch):
                raise RestoreError(
                    f"{recording.path} is camera {recording.camera!r}, stream epoch {recording.stream_epoch}; "
                    f"{first.path} is camera {first.camera!r}, stream epoch {first.stream_epoch}: only segments of "
                    "one camera's stream epoch can be restored into one output (track keys belong to an epoch)")
        first_record = next((recording.records[0] for recording in ordered if recording.records), None)
        for recording in ordered:
            if not recording.records or first_record is None:
                continue
            record = recording.records[0]
            if record.time_base != first_record.time_base or frame_size(record) != frame_size(first_record):
                raise RestoreError(
                    f"{recording.path} has frames of {frame_size(record)} in time base {record.time_base}, "
                    f"{ordered[0].path} of {frame_size(first_record)} in {first_record.time_base}: "
                    "restore these segments into separate outputs")
        for earlier, later in zip(ordered, ordered[1:]):
            if earlier.records and later.records and _absolute_seconds(later.records[0]) <= _absolute_seconds(earlier.records[-1]):
                raise RestoreError(f"{earlier.path} and {later.path} overlap in time; give each segment once")
        methods = {str(recording.records[0].document["method"]) for recording in ordered if recording.records}
        if len(methods) > 1:
            raise RecordingError(f"the segments use different anonymization methods: {', '.join(sorted(methods))}")
        return cls(tuple(ordered))

    @property
    def label(self) -> str:
        paths = [str(recording.path) for recording in self.recordings]
        return paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more segment(s))"

    @property
    def frame_count(self) -> int:
        return sum(len(recording.records) for recording in self.recordings)

    def seconds_of(self, record: FrameRecord) -> float:
        return _absolute_seconds(record) - self.recordings[0].first_seconds


def _absolute_seconds(record: FrameRecord) -> float:
    return float(record.pts * record.time_base)


def _span_start_positions(records: Sequence[FrameRecord], segments: Segments, request: RestoreRequest,
                          track_ids: set[int]) -> dict[int, int]:
    """Per track, the position of the record to start decoding its face stream at: the last key frame at
    or before the span's first record (0 without a span start)."""
    first_in_span = next((position for position, record in enumerate(records)
                          if _in_span(segments.seconds_of(record), request.from_s, request.to_s)), len(records))
    starts = {track_id: 0 for track_id in track_ids}
    if request.from_s is None:
        return starts
    for position, record in enumerate(records[:first_in_span + 1]):
        for descriptor in record.payload_descriptors:
            track_id = descriptor.get("track_id")
            if track_id in starts and descriptor.get("kind") == SEALED_FACE_PACKET_KIND and descriptor.get("keyframe"):
                starts[int(track_id)] = position  # type: ignore[arg-type]
    return starts


def _pts_key(seconds: float) -> int:
    return round(seconds * 1000)


def _restore_frames(
    request: RestoreRequest,
    segments: Segments,
    restorers: Sequence[FaceRestorer],
    track_ids: Sequence[int],
    problems: list[str],
    progress: object | None,
    output_path: Path,
    audio_sources: Sequence[Path] = (),
) -> RestoreResult:
    selected = set(track_ids)
    writer: RestoredVideoWriter | None = None
    faces_restored = 0
    restored_tracks: set[int] = set()
    decoded_total = 0
    try:
        for recording, restorer in zip(segments.recordings, restorers):
            records = recording.records
            usable = [record.authentic or not recording.signed for record in records]
            by_time = {_pts_key(_absolute_seconds(record)): position for position, record in enumerate(records)}
            starts = _span_start_positions(records, segments, request, selected)
            unauthentic = [record.frame_index for record, ok in zip(records, usable) if not ok]
            if unauthentic:
                problems.append(f"{recording.path}: {len(unauthentic)} frame(s) with records that are not authentic "
                                f"left anonymized (frames {_ranges(unauthentic)})")
            matched: set[int] = set()
            decoded_count = 0
            for pts, time_base, frame in decode_video(recording.path):
                seconds = float(pts * time_base) if pts is not None and time_base is not None else None
                position = by_time.get(_pts_key(seconds)) if seconds is not None else None
                if position is None:
                    message = (f"{recording.path}: video frame {decoded_count} at {seconds} s has no metadata record "
                               "(frames were added, or the file is damaged)")
                    if not request.partial:
                        raise RecordingError(message)
                    problems.append(message)
                    decoded_count += 1
                    continue
                record = records[position]
                matched.add(position)
                if writer is None:
                    writer = RestoredVideoWriter(output_path, (frame.width, frame.height), record.time_base,
                                                 _average_rate(recording), qp=request.qp, preset=RESTORE_PRESET,
                                                 lossless=request.lossless, audio_source=list(audio_sources) or None)
                in_planes = writer.takes_planes(frame) and not restorer.needs_pixels
                bgr = None if in_planes else frame.to_ndarray(format="bgr24")
                restored: list[RestoredFace] = []
                protected: list[tuple[int, int, int, int]] = []
                if usable[position]:
                    if isinstance(restorer, FaceStreamRestorer):
                        restorer.take_preroll(record)
                    if _in_span(segments.seconds_of(record), request.from_s, request.to_s):
                        restored, protected = _restore_one(bgr, record, restorer, selected, request.partial, problems,
                                                           restored_tracks)
                        faces_restored += len(restored)
                    elif isinstance(restorer, FaceStreamRestorer):
                        for track_id in selected:
                            if position >= starts.get(track_id, 0):
                                restorer.advance(record, track_id)
                if in_planes:
                    writer.write_decoded(paste_yuv420(frame, restored, protected), record.pts)
                else:
                    assert bgr is not None
                    writer.write(composite_restored(bgr, restored, protected) if restored else bgr, pts=record.pts)
                decoded_count += 1
                if progress is not None:
                    progress.update(1)  # type: ignore[attr-defined]
            missing = [records[position].frame_index for position in range(len(records)) if position not in matched]
            if missing:
                message = (f"{recording.path}: the video lacks {len(missing)} frame(s) the metadata describes "
                           f"(frames {_ranges(missing)}): the file is truncated or was cut")
                if not request.partial:
                    raise RecordingError(message)
                problems.append(message)
            decoded_total += decoded_count
        if writer is None:
            raise RecordingError(f"{segments.label}: no video frame could be decoded")
        if faces_restored == 0:
            raise RestoreError("no face could be restored" + (f": {problems[0]}" if problems else ""))
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return RestoreResult(request.output_path, decoded_total, faces_restored, sorted(restored_tracks), problems)


def _ranges(values: Sequence[int]) -> str:
    """`3-7, 12` for [3, 4, 5, 6, 7, 12]."""
    ordered = sorted(set(values))
    parts: list[str] = []
    start = previous = ordered[0]
    for value in ordered[1:] + [None]:  # type: ignore[operator]
        if value is not None and value == previous + 1:
            previous = value
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if value is not None:
            start = previous = value
    return ", ".join(parts)


def _average_rate(recording: Recording) -> Fraction:
    """The nominal frame rate of a recording, from its first and last pts (rate control only)."""
    records = recording.records
    if len(records) < 2:
        return Fraction(25)
    span_s = (records[-1].pts - records[0].pts) * records[0].time_base
    return Fraction(len(records) - 1) / span_s if span_s > 0 else Fraction(25)


def _restore_one(
    bgr: np.ndarray | None,
    record: FrameRecord,
    restorer: FaceRestorer,
    selected: set[int],
    partial: bool,
    problems: list[str],
    restored_tracks: set[int],
) -> tuple[list[RestoredFace], list[tuple[int, int, int, int]]]:
    """The faces of the selected tracks in this frame, and the regions that must stay anonymized.
    `bgr` is the anonymized frame, needed only by restorers that read pixels."""
    regions = _face_regions(record)
    restored: list[RestoredFace] = []
    failed: set[int] = set()
    for track_id in sorted(regions):
        if track_id not in selected:
            continue
        try:
            face = restorer.restore_face(bgr, record, track_id)
        except StreamdError as exc:
            if not partial:
                raise
            problems.append(f"frame {record.frame_index}, track {track_id}: {exc}")
            failed.add(track_id)
            continue
        if face is None:
            message = f"frame {record.frame_index}: no sealed payload for track {track_id} (removed or never sealed)"
            if not partial:
                raise RestoreError(message)
            problems.append(message)
            failed.add(track_id)
            continue
        restored.append(face)
        restored_tracks.add(track_id)
    protected = [region for track_id, track_regions in regions.items()
                 if track_id not in selected or track_id in failed for region in track_regions]
    return restored, protected


def _audit_context(request: RestoreRequest) -> AuditContext:
    inputs = [{"path": str(path), "sha256": file_sha256(path) if path.is_file() else None}
              for path in request.input_paths]
    return AuditContext(run_id=secrets.token_hex(8), reason=str(request.reason), inputs=inputs,
                        output_path=str(request.output_path))


def restore_recording(request: RestoreRequest, progress: object | None = None) -> RestoreResult:
    """Restore as `request` asks. The audit log gets a keyed `started` entry (who, what, why) before any
    payload is opened and a `finished` entry with the outcome, whatever happens. Raises StreamdError on
    failure."""
    if not request.reason or not request.reason.strip():
        raise RestoreError("say why the footage is restored: --reason \"case 2024-118, request of ...\" "
                           "(it is written to the audit log)")
    audit_log_path = request.audit_log_path or default_audit_log_path()
    audit_log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    context = _audit_context(request)
    span = None if request.from_s is None and request.to_s is None else (request.from_s, request.to_s)
    audit_tracks = sorted(request.tracks) if request.tracks is not None else None

    def audit(outcome: str, message: str, tracks: Sequence[int] | None, event: str = "finished") -> None:
        append_audit_entry(audit_log_path, action=AUDIT_ACTION, outcome=outcome, input_path=request.input_path,
                           input_sha256=context.inputs[0]["sha256"], tracks=tracks, span=span,  # type: ignore[arg-type]
                           message=message, context=context, event=event)

    try:
        private_key = load_private_key(request.key_path, request.passphrase)
    except StreamdError as exc:
        audit("failed", f"restore key not loaded: {exc}", audit_tracks)
        raise
    context.key_id = private_key.key_id
    context.mac_key = derive_audit_key(private_key)
    audit("started", f"restore of {len(request.input_paths)} file(s) into {request.output_path} started",
          audit_tracks, event=EVENT_STARTED)
    try:
        result = _restore(request, private_key, progress)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, StreamdError) else f"interrupted ({type(exc).__name__})"
        audit("failed", message, audit_tracks)
        raise
    summary = (f"{result.faces_restored} faces of tracks {', '.join(map(str, result.tracks_restored))} restored "
               f"into {result.output_path}")
    if len(request.input_paths) > 1:
        summary += f" from {len(request.input_paths)} segments"
    if result.problems:
        summary += f"; {len(result.problems)} problem(s), first: {result.problems[0]}"
    try:
        audit(result.outcome, summary, result.tracks_restored)
    except StreamdError:
        result.output_path.unlink(missing_ok=True)
        raise
    return result


def _audio_sources(request: RestoreRequest, recordings: Sequence[Recording], verifications: Sequence[Verification],
                   problems: list[str]) -> list[Path]:
    """The recordings whose audio the output copies: all with audio, unless `--no-audio`; with `--partial`,
    a signed recording whose audio is not the signed one keeps it out (and says so)."""
    if not request.audio:
        return []
    intact = {id(verification.recording): verification.audio_intact for verification in verifications}
    sources: list[Path] = []
    for recording in recordings:
        if not recording.has_audio:
            continue
        if not intact.get(id(recording), True):
            problems.append(f"{recording.path}: its audio is not copied (it is not the signed audio)")
            continue
        sources.append(recording.path)
    return sources


def _verify(request: RestoreRequest, recordings: Sequence[Recording], problems: list[str]) -> list[Verification]:
    """Check every recording's signatures (or allow an unsigned one when asked); strict unless partial."""
    unsigned = [recording for recording in recordings if not recording.signed]
    if unsigned:
        if not request.allow_unsigned:
            raise AuthenticityError(f"{unsigned[0].path} is an unsigned recording (format version "
                                    f"{unsigned[0].version}): its origin and completeness cannot be checked; "
                                    "restore it anyway with --allow-unsigned")
        if len(unsigned) < len(recordings):
            raise AuthenticityError("signed and unsigned recordings cannot be restored into one output")
        problems.append(f"{len(unsigned)} unsigned recording(s): restored faces are UNAUTHENTICATED (origin, "
                        "order and completeness not checked)")
        return []
    trust = TrustStore(request.trusted_hosts)
    verifications = [verify_recording(recording, trust) for recording in recordings]
    for recording in recordings:
        # Track keys count only from signed records: a wrapped key slipped into the file is ignored.
        recording.wrapped_keys = {}
        for record in recording.records:
            if record.authentic:
                for track_text, keys in record.document["wrapped_keys"].items():
                    recording.wrapped_keys.setdefault(int(track_text), []).extend(keys)
    order_problems = check_segment_order(verifications)
    for problem in [problem for verification in verifications for problem in verification.problems] + order_problems:
        if not request.partial:
            raise AuthenticityError(f"{problem}; nothing was restored (--partial restores what is intact)")
        problems.append(problem)
    return verifications


def _restore(request: RestoreRequest, private_key: RestorePrivateKey, progress: object | None) -> RestoreResult:
    if request.mode not in RESTORE_MODES:
        raise RestoreError(f"unknown restore mode {request.mode!r}; one of {', '.join(RESTORE_MODES)}")
    if request.from_s is not None and request.to_s is not None and request.to_s < request.from_s:
        raise RestoreError(f"--to {request.to_s} is before --from {request.from_s}")
    if len(set(path.resolve() for path in request.input_paths)) < len(request.input_paths):
        raise RestoreError("the same recording is given twice")
    if any(request.output_path.resolve() == path.resolve() for path in request.input_paths):
        raise RestoreError(f"{request.output_path}: the output must not overwrite an input")
    problems: list[str] = []
    recordings = [read_recording(path) for path in request.input_paths]
    segments = Segments.join(recordings)
    verifications = _verify(request, segments.recordings, problems)
    for recording in segments.recordings:
        _check_recording(request, recording, problems)
    method = str(segments.recordings[0].records[0].document["method"])
    if request.mode in ("neural", "cyclegan"):
        build_restorer(request.mode, method, segments.recordings[0], {})
    track_ids = _select_tracks(request, segments)
    if request.mode == "sealed" and not any(record.payload_descriptors for recording in segments.recordings
                                            for record in recording.records):
        raise RestoreError(f"{segments.label} holds no sealed payloads (recorded with sealed_payloads off); "
                           "only --mode neural could restore it")
    output = PrivateOutput(request.output_path, force=request.force)
    try:
        track_keys = _unwrap_keys(segments, track_ids, private_key, request.partial, problems)
        restorers = [build_restorer(request.mode, method, recording, track_keys) for recording in segments.recordings]
        if progress is not None:
            progress.total = segments.frame_count  # type: ignore[attr-defined]
        audio_sources = _audio_sources(request, segments.recordings, verifications, problems)
        result = _restore_frames(request, segments, restorers, sorted(track_keys), problems, progress, output.path,
                                 audio_sources)
        output.commit()
    except BaseException:
        output.discard()
        raise
    return result
