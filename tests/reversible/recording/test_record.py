"""`streamd record` on a live pipeline publishing in-process: segmented, self-contained, restorable
recordings; keys repeat for late subscribers; nothing original crosses the wire in the clear."""

from __future__ import annotations

import threading
import time

import pytest
import zmq
from restore_helpers import (
    decode_frames,
    inner_box,
    make_keypair,
    original_fingerprints,
    psnr,
    read_audit,
    the_host_key,
)

from streamd.app import open_stream
from streamd.config import AnonymizerConfig, CameraConfig, FileSourceConfig, OutputsConfig, ReversibleConfig, ZmqOutputConfig
from streamd.protocol import decode_event, decode_frame_message
from streamd.reversible.sealing import face_stream
from streamd.reversible.recording.recorder import Recorder
from streamd.reversible.recording.recording_format import read_recording
from streamd.reversible.recording.authenticity import AuthenticityError
from streamd.reversible.restore.restore import RestoreError, RestoreRequest, restore_recording

REASON = "test of the recorder"
KEYFRAME_INTERVAL_S = 0.2

SLOW_JOINER_S = 0.5


def _collect(endpoint: str, stop: threading.Event, ready: threading.Event, messages: list) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(endpoint)
    ready.set()
    try:
        while not stop.is_set():
            if socket.poll(50):
                messages.append(socket.recv_multipart())
    finally:
        socket.close(linger=0)
        context.term()


@pytest.fixture(scope="module")
def live_recording(demo_clip, tmp_path_factory):
    # Key frames every 0.2 s instead of 2 s, so the one-second clip has key frames mid-track.
    saved_interval, face_stream.KEYFRAME_INTERVAL_S = face_stream.KEYFRAME_INTERVAL_S, KEYFRAME_INTERVAL_S
    try:
        return _record_live(demo_clip, tmp_path_factory)
    finally:
        face_stream.KEYFRAME_INTERVAL_S = saved_interval


def _record_live(demo_clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    private_key, public_key = make_keypair(folder / "keys")
    camera = CameraConfig(
        id="lobby",
        source=FileSourceConfig(path=demo_clip.path),
        anonymizer=AnonymizerConfig(method="mosaic"),
        outputs=OutputsConfig(zmq=ZmqOutputConfig(endpoint="tcp://127.0.0.1:*", send_hwm=1000)),
        reversible=ReversibleConfig(recipients=[str(public_key)], key_repeat_s=0.2),
    )
    stop = threading.Event()
    messages: list[list[bytes]] = []
    with open_stream(camera) as pipeline:
        endpoint = pipeline.sinks[0].endpoint
        recorder = Recorder(endpoint, folder / "segments", segment_seconds=0.35, host_key=the_host_key())
        recorder_ready, collector_ready = threading.Event(), threading.Event()
        summary_holder = {}
        recorder_thread = threading.Thread(
            target=lambda: summary_holder.update(summary=recorder.run(stop=stop, ready=recorder_ready)))
        collector_thread = threading.Thread(target=_collect, args=(endpoint, stop, collector_ready, messages))
        recorder_thread.start()
        collector_thread.start()
        assert recorder_ready.wait(5) and collector_ready.wait(5)
        time.sleep(SLOW_JOINER_S)
        pipeline.run()
    # Both subscribers take the last messages in their own time (a loaded machine can be slow): wait,
    # bounded, until the recorder has every frame and the collector the stream's end.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            recorder.summary.frames >= demo_clip.frame_count
            and any(parts[0].startswith(b"event.") and b"stream_down" in parts[1] for parts in list(messages))):
        time.sleep(0.05)
    stop.set()
    recorder_thread.join(10)
    collector_thread.join(10)
    return {"folder": folder, "private_key": private_key, "summary": summary_holder["summary"], "messages": messages}


def test_segments_are_complete_and_self_contained(live_recording):
    summary = live_recording["summary"]
    assert summary.frames == 25 and summary.invalid_messages == 0 and summary.faces_without_keys == 0
    assert len(summary.files) == 3
    frames = 0
    for path in summary.files:
        recording = read_recording(path)
        assert not recording.truncated and recording.camera == "lobby"
        tracks = {face["track_id"] for record in recording.records for face in record.document["faces"]}
        assert tracks and tracks <= set(recording.wrapped_keys), "every segment carries the keys of its tracks"
        frames += len(recording.records)
    assert frames == 25


def test_second_segment_restores_on_its_own(live_recording, demo_clip, tmp_path):
    segment = live_recording["summary"].files[1]
    output, audit = tmp_path / "restored.mkv", tmp_path / "audit.jsonl"
    result = restore_recording(RestoreRequest(input_path=segment, output_path=output,
                                              key_path=live_recording["private_key"], tracks=frozenset({2}),
                                              audit_log_path=audit, reason=REASON, lossless=True))
    assert result.tracks_restored == [2] and result.problems == []
    assert read_audit(audit)[-1]["outcome"] == "ok"
    originals = decode_frames(demo_clip.path)
    recording = read_recording(segment)
    for record, restored in zip(recording.records, decode_frames(output)):
        face = next(face for face in record.document["faces"] if face["track_id"] == 2)
        x0, y0, x1, y1 = inner_box(face["xyxy"])
        assert psnr(originals[record.frame_index][y0:y1, x0:x1], restored[y0:y1, x0:x1]) >= 40.0


def test_wire_carries_keys_repeats_and_sealed_payloads(live_recording):
    events = [decode_event(parts) for parts in live_recording["messages"] if parts[0].startswith(b"event.")]
    frames = [decode_frame_message(parts) for parts in live_recording["messages"] if parts[0].startswith(b"frame.")]
    starts = [event for event in events if event["type"] == "track_start"]
    repeats = [event for event in events if event["type"] == "track_keys"]
    assert starts and all(event["wrapped_keys"] for event in starts)
    assert repeats, "live tracks' keys repeat every key_repeat_s"
    assert {event["track_id"] for event in repeats} <= {event["track_id"] for event in starts}
    header, _, parts = frames[3]
    assert header["version"] == "1.2"
    assert len(parts) == len(header["faces"]) and all(part.startswith(b"SDSL") for part in parts)
    assert [d["kind"] for d in header["payloads"]] == ["sealed_face_packet"] * len(parts)


def test_no_original_face_bytes_on_the_wire_or_in_segments(live_recording, demo_clip):
    originals = decode_frames(demo_clip.path)
    fingerprints = []
    for path in live_recording["summary"].files:
        fingerprints.extend(original_fingerprints(originals, path))
    assert len(fingerprints) > 100
    wire = b"".join(part for parts in live_recording["messages"] for part in parts)
    stored = b"".join(path.read_bytes() for path in live_recording["summary"].files)
    assert not [window for window in fingerprints if window in wire]
    assert not [window for window in fingerprints if window in stored]


def test_recorder_counts_frames_that_never_arrived(live_recording, tmp_path):
    recorder = Recorder("tcp://127.0.0.1:1", tmp_path / "segments", segment_seconds=60, host_key=the_host_key())
    lost = {5, 6, 7, 12}
    for parts in live_recording["messages"]:
        if parts[0].startswith(b"frame."):
            header, bgr, payload_parts = decode_frame_message(parts)
            if header["frame_index"] not in lost:
                recorder.handle_frame(header, bgr, payload_parts)
        else:
            recorder.handle_event(decode_event(parts))
    recorder.close_segment()
    assert recorder.summary.frames == 25 - len(lost)
    assert recorder.summary.frames_missing == len(lost)


def test_segments_restore_into_one_output_in_time_order(live_recording, demo_clip, tmp_path):
    first, second, third = live_recording["summary"].files
    output, audit = tmp_path / "joined.mkv", tmp_path / "audit.jsonl"
    result = restore_recording(RestoreRequest(input_path=second, more_inputs=(third, first), output_path=output,
                                              key_path=live_recording["private_key"], tracks=frozenset({2}),
                                              from_s=0.3, audit_log_path=audit, reason=REASON, lossless=True))
    assert result.tracks_restored == [2] and result.problems == [] and result.frames_written == 25
    started, finished = read_audit(audit)
    assert [entry["path"] for entry in finished["inputs"]] == [str(second), str(third), str(first)]
    assert finished["outcome"] == "ok" and all(entry["sha256"] for entry in finished["inputs"])
    originals = decode_frames(demo_clip.path)
    records = [record for path in (first, second, third) for record in read_recording(path).records]
    restored = decode_frames(output)
    assert len(restored) == len(records) == 25
    checked_before = checked_after = 0
    for record, frame in zip(records, restored):
        face = next((face for face in record.document["faces"] if face["track_id"] == 2), None)
        if face is None:
            continue
        x0, y0, x1, y1 = inner_box(face["xyxy"])
        seconds = float(record.pts * record.time_base) - float(records[0].pts * records[0].time_base)
        quality = psnr(originals[record.frame_index][y0:y1, x0:x1], frame[y0:y1, x0:x1])
        if seconds >= 0.3 + 1e-6:
            assert quality >= 40.0, "restored inside the span, in both segments"
            checked_after += 1
        elif seconds < 0.3 - 1e-6:
            assert quality < 30.0, "before --from the face stays anonymized"
            checked_before += 1
    assert checked_before > 0 and checked_after > 12


def test_the_same_segment_twice_is_refused(live_recording, tmp_path):
    segment = live_recording["summary"].files[0]
    with pytest.raises(RestoreError, match="given twice"):
        restore_recording(RestoreRequest(input_path=segment, more_inputs=(segment,), output_path=tmp_path / "x.mkv",
                                         key_path=live_recording["private_key"], audit_log_path=tmp_path / "a.jsonl",
                                         reason=REASON))
    assert not (tmp_path / "x.mkv").exists()


def test_a_missing_segment_is_found(live_recording, tmp_path):
    first, _, third = live_recording["summary"].files
    with pytest.raises(AuthenticityError, match="segment\\(s\\) 1-1 are missing between"):
        restore_recording(RestoreRequest(input_path=first, more_inputs=(third,), output_path=tmp_path / "x.mkv",
                                         key_path=live_recording["private_key"], audit_log_path=tmp_path / "a.jsonl",
                                         reason=REASON))
    assert not (tmp_path / "x.mkv").exists()
    result = restore_recording(RestoreRequest(input_path=first, more_inputs=(third,), output_path=tmp_path / "x.mkv",
                                              key_path=live_recording["private_key"], audit_log_path=tmp_path / "a.jsonl",
                                              reason=REASON, partial=True))
    assert any("segment(s) 1-1 are missing" in problem for problem in result.problems)


def test_segments_are_signed_and_linked(live_recording):
    recordings = [read_recording(path) for path in live_recording["summary"].files]
    assert [recording.segment["index"] for recording in recordings] == [0, 1, 2]
    assert recordings[0].segment["previous_end"] is None
    assert all(recording.signed and recording.segment["host_key_id"] == the_host_key().key_id
               for recording in recordings)


def test_a_segment_that_starts_mid_track_carries_its_preroll(live_recording):
    second = read_recording(live_recording["summary"].files[1])
    preroll = second.records[0].preroll
    tracks_now = {descriptor["track_id"] for descriptor in second.records[0].payload_descriptors
                  if not descriptor["keyframe"]}
    assert tracks_now, "the demo's tracks continue across the segment boundary"
    assert {packet.descriptor["track_id"] for packet in preroll} >= tracks_now
    assert all(packet.descriptor["frame_index"] < second.records[0].frame_index for packet in preroll)


def test_a_late_recorder_starts_each_face_stream_at_its_next_key_frame(live_recording, tmp_path):
    recorder = Recorder("tcp://127.0.0.1:1", tmp_path / "segments", segment_seconds=60, host_key=the_host_key())
    for parts in live_recording["messages"]:
        if parts[0].startswith(b"frame."):
            header, bgr, payload_parts = decode_frame_message(parts)
            if header["frame_index"] >= 3:
                recorder.handle_frame(header, bgr, payload_parts)
        else:
            recorder.handle_event(decode_event(parts))
    recorder.close_segment()
    assert recorder.summary.faces_before_key_frame > 0
    recording = read_recording(recorder.summary.files[0])
    first_packet: dict[int, dict] = {}
    for record in recording.records:
        for descriptor in record.payload_descriptors:
            first_packet.setdefault(descriptor["track_id"], descriptor)
    assert first_packet and all(descriptor["keyframe"] for descriptor in first_packet.values())
    result = restore_recording(RestoreRequest(input_path=recording.path, output_path=tmp_path / "out.mkv",
                                              key_path=live_recording["private_key"], tracks=frozenset({2}),
                                              audit_log_path=tmp_path / "a.jsonl", reason=REASON, partial=True))
    assert result.faces_restored > 0
    assert all("no sealed payload for track 2" in problem for problem in result.problems)
