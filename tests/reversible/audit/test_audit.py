"""Hash-chained audit log: appends, permissions, and detection of edits, deletions and reordering."""

from __future__ import annotations

import json
import os
import stat

import pytest

from streamd.reversible.audit.audit_log import (
    GENESIS_HASH,
    AuditLogError,
    append_audit_entry,
    audit_log_head,
    line_hash,
    verify_audit_log,
)
from streamd.hashing import file_sha256


def _write_log(log_path, entry_count: int = 4) -> None:
    for index in range(entry_count):
        append_audit_entry(
            log_path,
            action="restore",
            outcome="ok" if index % 2 == 0 else "failed",
            input_path=f"/recordings/clip{index}.mkv",
            input_sha256="ab" * 32,
            tracks=[3, 7],
            span=(1.5, None),
            message=f"run {index}",
        )


def _lines(log_path) -> list[bytes]:
    return log_path.read_bytes().splitlines(keepends=True)


def test_entries_chain_and_verify(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path)
    assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600
    entries = [json.loads(line) for line in _lines(log_path)]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    for previous_line, entry in zip(_lines(log_path), entries[1:]):
        assert entry["prev_hash"] == line_hash(previous_line.rstrip(b"\n"))
    assert [entry["seq"] for entry in entries] == [1, 2, 3, 4]
    first = entries[0]
    assert first["action"] == "restore" and first["tracks"] == [3, 7] and first["span"] == [1.5, None]
    assert first["who"] and first["when"].endswith("+00:00")
    assert verify_audit_log(log_path) == []
    assert audit_log_head(log_path) == line_hash(_lines(log_path)[-1].rstrip(b"\n"))


def test_edited_entry_is_detected(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path)
    lines = _lines(log_path)
    lines[1] = lines[1].replace(b'"outcome":"failed"', b'"outcome":"ok"')
    log_path.write_bytes(b"".join(lines))
    problems = verify_audit_log(log_path)
    assert [problem.line_number for problem in problems] == [3]
    assert "line 2 was edited" in str(problems[0])


def test_deleted_entry_is_detected(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path)
    lines = _lines(log_path)
    del lines[1]
    log_path.write_bytes(b"".join(lines))
    problems = verify_audit_log(log_path)
    assert {problem.line_number for problem in problems} == {2, 3}
    assert any("prev_hash does not match line 1" in str(problem) for problem in problems)


def test_deleted_first_entry_is_detected(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path)
    log_path.write_bytes(b"".join(_lines(log_path)[1:]))
    problems = verify_audit_log(log_path)
    assert problems[0].line_number == 1
    assert "genesis" in problems[0].message


def test_reordered_entries_are_detected(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path)
    lines = _lines(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    log_path.write_bytes(b"".join(lines))
    assert {problem.line_number for problem in verify_audit_log(log_path)} >= {2, 3}


def test_garbage_line_is_reported(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path, 2)
    with open(log_path, "ab") as log_file:
        log_file.write(b"not json\n")
    problems = verify_audit_log(log_path)
    assert problems[0].line_number == 3 and "not a JSON entry" in problems[0].message


def test_append_refuses_unterminated_log(tmp_path):
    log_path = tmp_path / "audit.jsonl"
    _write_log(log_path, 1)
    with open(log_path, "ab") as log_file:
        log_file.write(b'{"partial":')
    with pytest.raises(AuditLogError, match="incomplete line"):
        append_audit_entry(log_path, action="restore", outcome="ok")
    assert any("no newline" in problem.message for problem in verify_audit_log(log_path))


def test_missing_log_and_bad_outcome(tmp_path):
    with pytest.raises(AuditLogError, match="does not exist"):
        verify_audit_log(tmp_path / "absent.jsonl")
    with pytest.raises(ValueError, match="outcome"):
        append_audit_entry(tmp_path / "audit.jsonl", action="restore", outcome="maybe")


def test_file_sha256(tmp_path):
    input_path = tmp_path / "input.bin"
    input_path.write_bytes(b"abc")
    assert file_sha256(input_path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
