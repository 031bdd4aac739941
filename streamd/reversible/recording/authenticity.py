"""Checking a recording's signatures and chain against the pinned host keys (docs/recording.md).

`verify_recording` marks every frame record whose signature is valid as `authentic` and lists what
is wrong: records missing, reordered, altered or unsigned, an unknown signer, a video or audio that
is not the signed one, a missing end record. `check_segment_order` checks that segments given together
follow each other without a gap. Restore refuses any problem unless `--partial`, and then uses only
authentic records and says exactly what was left out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamd.errors import StreamdError
from streamd.reversible.recording.chain import ChainVerifier
from streamd.reversible.keys.host_keys import HostPublicKey, TrustStore
from streamd.reversible.recording.recording_format import RECORD_END, Recording


class AuthenticityError(StreamdError):
    """A recording is unsigned, signed by an unknown host, or fails its signatures or chain."""


@dataclass
class Verification:
    """The outcome for one recording file."""

    recording: Recording
    host: HostPublicKey | None
    problems: list[str] = field(default_factory=list)
    end_digest: str | None = None
    video_intact: bool = True
    audio_intact: bool = True

    @property
    def intact(self) -> bool:
        return not self.problems


def _segment_host(recording: Recording, trust: TrustStore) -> HostPublicKey:
    segment = recording.segment
    first = recording.packets[0].record if recording.packets else {}
    if segment is None or first.get("segment") is not segment:
        raise AuthenticityError(f"{recording.path}: the first record does not name its segment and host key; "
                                "the recording was cut at the start or rewritten")
    try:
        raw_public = base64.b64decode(str(segment.get("host_public_key")).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise AuthenticityError(f"{recording.path}: the segment's host public key is not base64") from None
    return trust.require(str(segment.get("host_key_id")), raw_public, str(recording.path))


def verify_recording(recording: Recording, trust: TrustStore) -> Verification:
    """Check one signed recording; raises AuthenticityError (or HostKeyError) when nothing can be trusted."""
    if not recording.signed:
        raise AuthenticityError(f"{recording.path}: an unsigned recording (format version {recording.version}); "
                                "its origin and completeness cannot be checked")
    host = _segment_host(recording, trust)
    verifier = ChainVerifier(host)
    by_packet = {id(record.packet): record for record in recording.records if record.packet is not None}
    signed_video: list[str] = []
    signed_audio: dict[str, list[str]] = {}
    end_seen = False
    for position, packet in enumerate(recording.packets):
        if not verifier.check(packet, position):
            continue
        signed_video.extend(str(digest) for digest in packet.record.get("video", []))
        _collect_audio(packet.record.get("audio"), signed_audio)
        record = by_packet.get(id(packet))
        if record is not None:
            record.authentic = True
        if packet.record.get("record") == RECORD_END:
            end_seen = True
    if recording.packets and not any(record.authentic for record in recording.records[:1]):
        verifier.report.problems.append("the first record (with the segment header) is not authentic")
    report = verifier.finish(end_seen)
    verification = Verification(recording, host, [f"{recording.path}: {problem}" for problem in report.problems],
                                report.end_digest)
    if signed_video != recording.video_digests:
        first = next((index for index, (signed, found) in enumerate(zip(signed_video, recording.video_digests))
                      if signed != found), min(len(signed_video), len(recording.video_digests)))
        verification.video_intact = False
        verification.problems.append(
            f"{recording.path}: the anonymized video is not the signed one from video packet {first} on "
            f"({len(recording.video_digests)} packets in the file, {len(signed_video)} signed)")
    first_authentic = bool(recording.packets) and 0 in report.authentic
    audio_problem = _audio_problem(recording, signed_audio, first_authentic)
    if audio_problem is not None:
        verification.audio_intact = False
        verification.problems.append(f"{recording.path}: {audio_problem}")
    return verification


def _collect_audio(listed: Any, signed_audio: dict[str, list[str]]) -> None:
    """Add a record's `audio` field (audio stream ordinal as text -> digests) to what is signed so far."""
    if not isinstance(listed, dict):
        if listed is not None:
            signed_audio.setdefault("malformed", []).append(repr(listed))
        return
    for ordinal, digests in listed.items():
        signed_audio.setdefault(str(ordinal), []).extend(
            str(digest) for digest in (digests if isinstance(digests, list) else [digests]))


def _audio_problem(recording: Recording, signed_audio: dict[str, list[str]], first_authentic: bool) -> str | None:
    """What is wrong with the file's audio against the signed records: None when it is the signed audio
    (or there is none, signed or found). The audio streams are named by the first record, and count
    only when its signature is valid."""
    first = recording.packets[0].record if first_authentic else {}
    segment = first.get("segment") if isinstance(first.get("segment"), dict) else {}
    signed_codecs = segment.get("audio_streams", [])
    if not isinstance(signed_codecs, list):
        return "the signed list of audio streams is malformed"
    found_codecs = recording.audio_codecs
    if found_codecs and not signed_codecs and not signed_audio:
        return (f"the file has {len(found_codecs)} audio stream(s) ({', '.join(found_codecs)}) that its records "
                "do not sign: the audio was added")
    if [str(codec) for codec in signed_codecs] != found_codecs:
        return (f"the audio streams are not the signed ones ({', '.join(map(str, signed_codecs)) or 'none'} signed, "
                f"{', '.join(found_codecs) or 'none'} in the file)")
    unknown = sorted(set(signed_audio) - {str(ordinal) for ordinal in range(len(found_codecs))})
    if unknown:
        return f"the records sign audio of stream(s) {', '.join(unknown)}, which the file does not have"
    for ordinal, found in enumerate(recording.audio_digests):
        signed = signed_audio.get(str(ordinal), [])
        if signed != found:
            first_difference = next((index for index, (expected, seen) in enumerate(zip(signed, found))
                                     if expected != seen), min(len(signed), len(found)))
            return (f"the audio is not the signed one from packet {first_difference} of audio stream {ordinal} on "
                    f"({len(found)} packets in the file, {len(signed)} signed): audio packets were altered, "
                    "removed, added, reordered or retimed")
    return None


def check_segment_order(verifications: Sequence[Verification]) -> list[str]:
    """Problems in how the segments (sorted by time) follow each other: gaps, repeats, other hosts."""
    problems: list[str] = []
    for earlier, later in zip(verifications, verifications[1:]):
        before, after = earlier.recording.segment or {}, later.recording.segment or {}
        if earlier.host is not None and later.host is not None and earlier.host.key_id != later.host.key_id:
            problems.append(f"{later.recording.path} is signed by host {later.host.key_id}, "
                            f"{earlier.recording.path} by {earlier.host.key_id}")
        index_before, index_after = before.get("index"), after.get("index")
        if isinstance(index_before, int) and isinstance(index_after, int) and index_after != index_before + 1:
            problems.append(f"segment(s) {index_before + 1}-{index_after - 1} are missing between "
                            f"{earlier.recording.path} (segment {index_before}) and {later.recording.path} "
                            f"(segment {index_after})" if index_after > index_before + 1 else
                            f"{later.recording.path} (segment {index_after}) does not follow "
                            f"{earlier.recording.path} (segment {index_before}): reordered or repeated")
        elif after.get("previous_end") != earlier.end_digest:
            problems.append(f"{later.recording.path} does not continue {earlier.recording.path} "
                            "(its link to the previous segment does not match)")
    return problems
