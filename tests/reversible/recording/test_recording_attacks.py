"""Attacks on restorable recordings and on restore itself, each refused or detected with one clear line:
forgery with only the public key, deleted and reordered records, an unknown signer, a re-hashed audit
log, a killed restore, readable or overwritten outputs, a neighbour's face inside a sealed crop, an
unusable recipient key; and old unsigned recordings still restore when asked."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from restore_helpers import (
    anonymize_reversibly,
    attacker_host_key,
    decode_frames,
    inner_box,
    make_keypair,
    psnr,
    read_audit,
    rewrite_recording,
    the_host_key,
)

from streamd.align import expand_box
from streamd.cli import main
from streamd.reversible.recording.chain import unstored_packet
from streamd.reversible.audit.audit_log import line_hash, verify_audit_log
from streamd.reversible.sealing.face_stream import FaceStreamEncoder
from streamd.reversible.keys.host_keys import TRUST_STORE_ENV, trust_host
from streamd.reversible.keys.restore_keys import (
    derive_audit_key,
    derive_payload_key,
    load_private_key,
    load_public_key,
    new_track_key,
    track_key_context,
    wrap_track_key,
)
from streamd.reversible.recording.recording_format import METADATA_STREAM_TITLE, read_recording
from streamd.reversible.restore.restore import _face_regions, composite_restored, list_tracks
from streamd.reversible.restore.restorers import FaceStreamRestorer
from streamd.reversible.sealing.payloads import seal_packet
from streamd.reversible.sealing.stream_sealer import binding_for_payload, StreamSealer
from streamd.types import TrackedFace, VideoFrame

DATA = Path(__file__).parents[1] / "data"
RED = np.array([0, 0, 255], dtype=np.uint8)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    private_key, public_key = make_keypair(tmp_path_factory.mktemp("keys") / "authority")
    return {"private": private_key, "public": public_key}


@pytest.fixture(scope="module")
def recording(demo_clip, keys, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recording")
    return anonymize_reversibly(demo_clip.path, folder / "anonymized.mkv", [keys["public"]])


def _restore(capsys, *argv: str) -> tuple[int, str]:
    code = main(["restore", *argv])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("streamd:")]
    assert len(lines) == 1 and lines[0].startswith("streamd: error: "), err
    return lines[0]


def _track(recording_path: Path) -> int:
    _, summaries = list_tracks(recording_path)
    return summaries[1].track_id


# ---------------------------------------------------------------- forgery
def _reseal_track_as_red(records, track_id: int, authority_public: Path) -> None:
    """What anyone holding restore.pub can do: a new track key wrapped to the authority, and every packet
    of the track re-sealed under it as a red square."""
    first = records[0].document
    track_key = new_track_key()
    payload_key = derive_payload_key(track_key)
    wrapped = [entry.to_dict() for entry in wrap_track_key(
        track_key, [load_public_key(authority_public)], track_key_context(first["camera"], first["stream_epoch"], track_id))]
    encoder = FaceStreamEncoder((first["width"], first["height"]))
    for record in records:
        record.document["wrapped_keys"] = {key: value for key, value in record.document["wrapped_keys"].items()
                                           if key != str(track_id)}
        for position, descriptor in enumerate(record.payload_descriptors):
            if descriptor["track_id"] != track_id:
                continue
            width, height = descriptor["crop_wh"]
            packet = encoder.encode(np.broadcast_to(RED, (height, width, 3)).copy(), record.frame_index / 25)
            descriptor.update(part=packet.part, number=packet.number, canvas_wh=list(packet.canvas_wh),
                              keyframe=packet.keyframe)
            binding = binding_for_payload(camera=first["camera"], stream_epoch=first["stream_epoch"],
                                          frame_index=record.frame_index, pts=record.pts, descriptor=descriptor)
            record.payload_data[position] = seal_packet(packet.data, payload_key, binding)
    records[0].document["wrapped_keys"][str(track_id)] = wrapped


def test_forgery_with_only_the_public_key_is_refused(recording, keys, tmp_path, capsys):
    track_id = _track(recording)
    forged = rewrite_recording(recording, tmp_path / "forged.mkv",
                               lambda records: _reseal_track_as_red(records, track_id, keys["public"]),
                               attacker_host_key(tmp_path / "attacker"))
    output, audit = tmp_path / "out.mkv", tmp_path / "audit.jsonl"
    code, err = _restore(capsys, str(forged), "--key", str(keys["private"]), "-o", str(output), "--tracks",
                         str(track_id), "--reason", "forgery test", "--audit-log", str(audit))
    assert code != 0 and "which is not trusted here" in _one_error_line(err)
    assert not output.exists()
    assert read_audit(audit)[-1]["outcome"] == "failed"


def test_forgery_that_claims_the_real_host_key_fails_its_signatures(recording, keys, tmp_path, capsys):
    track_id = _track(recording)
    forged = rewrite_recording(recording, tmp_path / "forged.mkv",
                               lambda records: _reseal_track_as_red(records, track_id, keys["public"]),
                               attacker_host_key(tmp_path / "attacker"))
    real = the_host_key()
    claimed = _rewrite_metadata_packets(forged, tmp_path / "claimed.mkv", lambda position, data: unstored_packet(
        data).replace(*_segment_claim(forged, real)) if position == 0 else data)
    code, err = _restore(capsys, str(claimed), "--key", str(keys["private"]), "-o", str(tmp_path / "out.mkv"),
                         "--tracks", str(track_id), "--reason", "forgery test", "--audit-log", str(tmp_path / "a"))
    assert code != 0 and "has an invalid signature" in _one_error_line(err)


def _segment_claim(path: Path, real) -> tuple[bytes, bytes]:
    segment = read_recording(path).segment
    fake = json.dumps({"host_key_id": segment["host_key_id"], "host_public_key": segment["host_public_key"]},
                      separators=(",", ":"))[1:-1].encode()
    genuine = json.dumps({"host_key_id": real.key_id,
                          "host_public_key": base64.b64encode(real.public.raw_bytes).decode()},
                         separators=(",", ":"))[1:-1].encode()
    return fake, genuine


def test_the_legitimate_recording_restores_the_real_face(recording, keys, demo_clip, tmp_path, capsys):
    track_id = _track(recording)
    output = tmp_path / "out.mkv"
    code, err = _restore(capsys, str(recording), "--key", str(keys["private"]), "-o", str(output), "--tracks",
                         str(track_id), "--reason", "case 1", "--audit-log", str(tmp_path / "a"), "--lossless")
    assert code == 0, err
    originals = decode_frames(demo_clip.path)
    for record, frame in zip(read_recording(recording).records, decode_frames(output)):
        face = next(face for face in record.document["faces"] if face["track_id"] == track_id)
        x0, y0, x1, y1 = inner_box(face["xyxy"])
        assert psnr(originals[record.frame_index][y0:y1, x0:x1], frame[y0:y1, x0:x1]) >= 40.0


def test_an_unknown_signer_is_refused(recording, keys, tmp_path, capsys):
    empty_store = tmp_path / "trusted-hosts"
    empty_store.mkdir()
    code, err = _restore(capsys, str(recording), "--key", str(keys["private"]), "-o", str(tmp_path / "out.mkv"),
                         "--reason", "test", "--trusted-hosts", str(empty_store), "--audit-log", str(tmp_path / "a"))
    line = _one_error_line(err)
    assert code != 0 and f"signed by host key {the_host_key().key_id}, which is not trusted here" in line


# ---------------------------------------------------------------- deleted and reordered records
def _rewrite_metadata_packets(source: Path, target: Path, edit, drop_frames: range = range(0)) -> Path:
    """Remux `source` without re-encoding or re-signing: metadata packets may be edited or exchanged
    (`edit(position, bytes)`), or dropped with their video packets (`drop_frames`)."""
    records = read_recording(source).records
    dropped_ms = {round(float(r.pts * r.time_base) * 1000) for r in records if r.frame_index in drop_frames}
    with av.open(str(source)) as reader, av.open(str(target), "w", format="matroska") as writer:
        video_in = reader.streams.video[0]
        meta_in = next(s for s in reader.streams if s.metadata.get("title") == METADATA_STREAM_TITLE)
        video_out = writer.add_stream_from_template(video_in)
        meta_out = writer.add_mux_stream("subrip")
        meta_out.time_base = Fraction(1, 1000)
        meta_out.metadata["title"] = METADATA_STREAM_TITLE
        position = 0
        for packet in reader.demux(video_in, meta_in):
            if packet.size == 0:
                continue
            ms = round(float(packet.pts * packet.time_base) * 1000)
            if packet.stream is video_in:
                if ms in dropped_ms:
                    continue
                copy = av.Packet(bytes(packet))
                copy.stream, copy.time_base = video_out, packet.time_base
                copy.pts, copy.dts, copy.is_keyframe = packet.pts, packet.dts, packet.is_keyframe
                writer.mux(copy)
                continue
            data = edit(position, bytes(packet))
            position += 1
            if ms in dropped_ms:
                continue
            copy = av.Packet(data)
            copy.stream, copy.time_base = meta_out, Fraction(1, 1000)
            copy.pts = copy.dts = ms
            copy.duration = 40
            writer.mux(copy)
    return target


def test_deleted_frames_are_found_and_partial_says_which(recording, keys, tmp_path, capsys):
    cut = _rewrite_metadata_packets(recording, tmp_path / "cut.mkv", lambda position, data: data,
                                    drop_frames=range(10, 15))
    output, audit = tmp_path / "out.mkv", tmp_path / "audit.jsonl"
    track_id = _track(recording)
    argv = [str(cut), "--key", str(keys["private"]), "-o", str(output), "--tracks", str(track_id),
            "--reason", "gap test", "--audit-log", str(audit)]
    code, err = _restore(capsys, *argv)
    assert code != 0 and "records 10-14 of the segment are missing" in _one_error_line(err)
    assert not output.exists()

    code, err = _restore(capsys, *argv, "--partial")
    assert code == 3, err
    assert "records 10-14 of the segment are missing" in err
    assert output.exists() and read_audit(audit)[-1]["outcome"] == "partial"


def _metadata_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as reader:
        stream = next(s for s in reader.streams if s.metadata.get("title") == METADATA_STREAM_TITLE)
        return [bytes(packet) for packet in reader.demux(stream) if packet.size]


def test_reordered_records_are_found(recording, keys, tmp_path, capsys):
    packets = _metadata_packets(recording)
    order = {5: packets[6], 6: packets[5]}
    shuffled = _rewrite_metadata_packets(recording, tmp_path / "shuffled.mkv",
                                         lambda position, data: order.get(position, data))
    code, err = _restore(capsys, str(shuffled), "--key", str(keys["private"]), "-o", str(tmp_path / "out.mkv"),
                         "--reason", "order test", "--audit-log", str(tmp_path / "a"))
    assert code != 0 and "out of order" in _one_error_line(err)


def test_a_payload_moved_inside_the_signed_file_breaks_its_signature(recording, keys, tmp_path, capsys):
    def move_blob(position: int, data: bytes) -> bytes:
        if position != 3:
            return data
        head, _, blobs = unstored_packet(data).partition(b"\n")
        return head + b"\n" + blobs[1:] + blobs[:1]

    moved = _rewrite_metadata_packets(recording, tmp_path / "moved.mkv", move_blob)
    code, err = _restore(capsys, str(moved), "--key", str(keys["private"]), "-o", str(tmp_path / "out.mkv"),
                         "--reason", "move test", "--audit-log", str(tmp_path / "a"))
    assert code != 0 and "record 3 (frame 3) has an invalid signature" in _one_error_line(err)


# ---------------------------------------------------------------- audit
def test_a_rehashed_audit_log_is_detected(recording, keys, tmp_path, capsys):
    audit = tmp_path / "audit.jsonl"
    for run in range(2):
        code, err = _restore(capsys, str(recording), "--key", str(keys["private"]), "-o", str(tmp_path / f"{run}.mkv"),
                             "--tracks", "1", "--reason", f"case {run}", "--audit-log", str(audit))
        assert code == 0, err
    assert main(["audit", "head", str(audit)]) == 0
    head = capsys.readouterr().out.strip()
    assert head == line_hash(audit.read_bytes().splitlines()[-1])

    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    entries[1]["tracks"] = [2]
    entries[1]["reason"] = "something else"
    lines: list[bytes] = []
    for entry in entries:  # re-hash the chain after the edit, as someone editing the file would
        entry["prev_hash"] = line_hash(lines[-1]) if lines else "0" * 64
        lines.append(json.dumps(entry, separators=(",", ":")).encode())
    audit.write_bytes(b"\n".join(lines) + b"\n")

    assert verify_audit_log(audit) == [], "the chain alone cannot see a re-hash"
    private_key = load_private_key(keys["private"], None)
    problems = verify_audit_log(audit, mac_key=derive_audit_key(private_key), key_id=private_key.key_id)
    assert problems and problems[0].line_number == 2 and "MAC does not match" in problems[0].message
    assert main(["audit", "verify", str(audit), "--key", str(keys["private"])]) == 1
    assert "MAC does not match" in capsys.readouterr().out
    assert main(["audit", "verify", str(audit), "--head", head]) == 1
    assert "not in the log" in capsys.readouterr().out


def test_restore_needs_a_reason(recording, keys, tmp_path, capsys):
    code, err = _restore(capsys, str(recording), "--key", str(keys["private"]), "-o", str(tmp_path / "out.mkv"),
                         "--audit-log", str(tmp_path / "a"))
    assert code != 0 and "--reason" in _one_error_line(err)
    assert not (tmp_path / "a").exists()


def test_a_killed_restore_leaves_nothing_readable_and_is_cleaned_next_time(recording, keys, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    audit = tmp_path / "audit.jsonl"
    # --lossless: the slower 4:4:4 path leaves more time to catch the restore while it writes.
    argv = [sys.executable, "-m", "streamd", "restore", str(recording), "--key", str(keys["private"]),
            "-o", str(out_dir / "restored.mkv"), "--reason", "kill test", "--audit-log", str(audit), "--lossless"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 120
    work = []
    while time.monotonic() < deadline and process.poll() is None:
        work = list(out_dir.glob(".streamd-restore-*/restored.mkv"))
        if work:
            process.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.002)
    assert work, f"the restore ended before it could be killed: {process.poll()} {process.stderr.read()!r}"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert not (out_dir / "restored.mkv").exists()
    folder = work[0].parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(work[0].stat().st_mode) == 0o600
    assert read_audit(audit)[-1]["event"] == "started"
    problems = verify_audit_log(audit)
    assert any("started here and never finished" in problem.message for problem in problems)

    code = subprocess.run(argv, capture_output=True, timeout=300, env=os.environ.copy()).returncode
    assert code == 0
    assert not folder.exists(), "the next run removes what the killed one left"
    assert stat.S_IMODE((out_dir / "restored.mkv").stat().st_mode) == 0o600


# ---------------------------------------------------------------- outputs
def test_outputs_are_private_playable_and_never_replaced_silently(recording, keys, tmp_path, capsys):
    output = tmp_path / "restored.mkv"
    output.write_bytes(b"an earlier file")
    argv = [str(recording), "--key", str(keys["private"]), "-o", str(output), "--tracks", "1",
            "--reason", "output test", "--audit-log", str(tmp_path / "a")]
    code, err = _restore(capsys, *argv)
    assert code != 0 and "already exists; refusing to replace it" in _one_error_line(err)
    assert output.read_bytes() == b"an earlier file"

    code, err = _restore(capsys, *argv, "--force")
    assert code == 0, err
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"

    lossless = tmp_path / "lossless.mkv"
    code, err = _restore(capsys, *[str(lossless) if arg == str(output) else arg for arg in argv], "--lossless")
    assert code == 0, err
    with av.open(str(lossless)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv444p"


def test_thumbnails_show_each_track_anonymized(recording, demo_clip, tmp_path, capsys):
    folder = tmp_path / "thumbs"
    assert main(["restore", "--list", "--thumbnails", str(folder), str(recording)]) == 0
    out = capsys.readouterr().out
    _, summaries = list_tracks(recording)
    written = sorted(path.name for path in folder.glob("track-*.jpg"))
    assert written == sorted(f"track-{summary.track_id}.jpg" for summary in summaries)
    assert out.count("thumbnail: ") == len(summaries)


# ---------------------------------------------------------------- neighbours
def _face(track_id: int, xyxy) -> TrackedFace:
    return TrackedFace(track_id=track_id, xyxy=np.array(xyxy, dtype=np.float32), kps5=np.zeros((5, 2), np.float32),
                       score=0.9, detected=True, age_frames=1)


def test_a_neighbour_inside_a_sealed_region_is_not_revealed(keys):
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    # A frame as a decoder gives it: 4:2:0 like every source video, as the face stream codes it.
    bgr = av.VideoFrame.from_ndarray(noise, format="bgr24").reformat(format="yuv420p").to_ndarray(format="bgr24")
    first, second = _face(1, (60, 60, 140, 160)), _face(2, (135, 70, 205, 170))
    public = load_public_key(keys["public"])
    sealer = StreamSealer(camera_id="cam", stream_epoch="e1", recipients=[public],
                          region_of=lambda face, wh: expand_box(face.xyxy, 0.2, wh))
    sealer.start_track(1)
    sealer.start_track(2)
    frame = VideoFrame(bgr=bgr, index=0, pts=0, time_base=Fraction(1, 25), wallclock=0.0)
    sealed = sealer.seal_frame(frame, [first, second])

    private_key = load_private_key(keys["private"], None)
    from streamd.reversible.keys.restore_keys import unwrap_track_key
    from streamd.reversible.recording.recording_format import FrameRecord

    track_key = unwrap_track_key(sealed.started_keys[1], private_key, track_key_context("cam", "e1", 1))
    descriptors = [{**descriptor} for descriptor, _ in sealed.payloads]
    # The neighbour's metadata is stripped: only track 1's face and payload remain.
    keep = [position for position, descriptor in enumerate(descriptors) if descriptor["track_id"] == 1]
    document = {"frame_index": 0, "pts": 0, "time_base": "1/25", "width": 320, "height": 240,
                "faces": [{"track_id": 1, "xyxy": [60.0, 60.0, 140.0, 160.0]}]}
    record = FrameRecord(document=document, payload_descriptors=[descriptors[p] for p in keep],
                         payload_data=[sealed.payloads[p][1] for p in keep])
    anonymized = np.zeros_like(bgr)
    restorer = FaceStreamRestorer("cam", "e1", {1: derive_payload_key(track_key)})
    face = restorer.restore_face(anonymized, record, 1)
    restored = composite_restored(anonymized, [face], [])
    neighbour_core = (slice(75, 165), slice(150, 200))  # inside face 2's box, inside face 1's region
    x0, y0, x1, y1 = expand_box(first.xyxy, 0.2, (320, 240))
    assert x1 > 150, "the neighbour's box reaches into the first face's sealed region"
    inside = (neighbour_core[0], slice(150, x1))
    assert psnr(bgr[inside], restored[inside]) < 15.0, "the neighbour's face came back with the first face"
    own = (slice(70, 150), slice(70, 130))
    assert psnr(bgr[own], restored[own]) > 30.0, "the first face itself is restored"
    assert _face_regions(record)


# ---------------------------------------------------------------- keys and old recordings
def test_an_all_zero_recipient_fails_validate_config(keys, tmp_path, capsys):
    document = json.loads(keys["public"].read_text())
    document["public_key"] = base64.b64encode(bytes(32)).decode()
    document["key_id"] = hashlib.sha256(bytes(32)).hexdigest()[:16]
    zero = tmp_path / "zero.pub"
    zero.write_text(json.dumps(document))
    config = tmp_path / "camera.yaml"
    config.write_text(f"cameras:\n  - id: cam-z\n    source: {{type: file, path: clip.mp4}}\n"
                      f"    reversible:\n      recipients: [{zero}]\n")
    code = main(["validate-config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "camera cam-z: reversible.recipients" in _one_error_line(err)
    assert "not a usable X25519 key" in err


def test_recordings_with_crf_face_streams_and_plainly_compressed_records_still_restore(tmp_path, capsys,
                                                                                      monkeypatch):
    """A signed recording of the previous writer (face streams at CRF 9, records compressed without the
    record dictionary) restores with this build."""
    keys = tmp_path / "keys"
    shutil.copytree(DATA / "v2-crf-keys", keys)
    os.chmod(keys / "restore.key", 0o600)
    monkeypatch.setenv(TRUST_STORE_ENV, str(tmp_path / "trusted"))
    trust_host(keys / "host.pub", tmp_path / "trusted")
    recording = DATA / "v2-crf-recording.mkv"
    output = tmp_path / "restored.mkv"
    code, err = _restore(capsys, str(recording), "--key", str(keys / "restore.key"), "-o", str(output),
                         "--reason", "footage from before", "--audit-log", str(tmp_path / "a"), "--lossless")
    assert code == 0, err
    originals = decode_frames(DATA / "v1-source.mp4")
    records = read_recording(recording).records
    faces = 0
    # this small noisy clip at CRF 9 restores its faces at 32-48 dB; anonymized they are at 14-18 dB
    for record, frame, anonymized in zip(records, decode_frames(output), decode_frames(recording)):
        for face in record.document["faces"]:
            x0, y0, x1, y1 = inner_box(face["xyxy"])
            original = originals[record.frame_index][y0:y1, x0:x1]
            restored_db = psnr(original, frame[y0:y1, x0:x1])
            assert restored_db >= 30.0 and restored_db >= psnr(original, anonymized[y0:y1, x0:x1]) + 12.0
            faces += 1
    assert faces >= 15


def test_old_unsigned_recordings_restore_only_when_asked_and_say_so(tmp_path, capsys):
    keys = tmp_path / "keys"
    shutil.copytree(DATA / "v1-keys", keys)
    os.chmod(keys / "restore.key", 0o600)
    output = tmp_path / "restored.mkv"
    argv = [str(DATA / "v1-recording.mkv"), "--key", str(keys / "restore.key"), "-o", str(output),
            "--reason", "old footage", "--audit-log", str(tmp_path / "a"), "--lossless"]
    code, err = _restore(capsys, *argv)
    assert code != 0 and "unsigned recording" in _one_error_line(err) and "--allow-unsigned" in err
    code, err = _restore(capsys, *argv, "--allow-unsigned")
    assert code == 3 and "UNAUTHENTICATED" in err
    originals = decode_frames(DATA / "v1-source.mp4")
    records = read_recording(DATA / "v1-recording.mkv").records
    for record, frame in zip(records, decode_frames(output)):
        for face in record.document["faces"]:
            x0, y0, x1, y1 = inner_box(face["xyxy"])
            assert psnr(originals[record.frame_index][y0:y1, x0:x1], frame[y0:y1, x0:x1]) >= 40.0
