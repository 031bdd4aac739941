"""Append-only, hash-chained and keyed audit log (JSON lines) for restore operations.

Each line is one JSON object. Its `prev_hash` is the SHA-256 (hex) of the previous line's bytes,
without the line's trailing newline; the first line carries GENESIS_HASH. `seq` counts lines from 1.
Editing, deleting or reordering any line but the last breaks the chain at the line after it, which
`verify_audit_log` reports by line number.

Entries written by a restore carry `mac`: HMAC-SHA256, under a key derived from the restore private
key (`streamd.reversible.keys.restore_keys.derive_audit_key`), over the entry without `mac`, and `key_id` names that
restore key. Whoever edits an entry and re-hashes the chain after it cannot recompute the MACs
without the private key: `verify_audit_log(..., mac_key=...)` finds it. A restore writes a `started`
entry (who, what, why) before it opens any payload and a `finished` entry with the same `run` id at
the end; a `started` entry without its `finished` entry is a run that was killed. Cutting lines off
the end, or rewriting the whole file by the key holder, cannot be seen from the file alone: copy the
head (`audit_log_head`, `streamd audit head`) somewhere the operator cannot modify.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import hmac
import json
import logging
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamd.errors import StreamdError

logger = logging.getLogger(__name__)

AUDIT_FORMAT_VERSION = 2
LEGACY_AUDIT_FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
ENTRY_FIELDS = (
    "v",
    "seq",
    "prev_hash",
    "who",
    "when",
    "action",
    "input_path",
    "input_sha256",
    "tracks",
    "span",
    "outcome",
    "message",
)
#: Fields of a version 2 entry beyond ENTRY_FIELDS.
KEYED_FIELDS = ("event", "run", "reason", "inputs", "output_path", "key_id", "mac")
EVENT_STARTED = "started"
EVENT_FINISHED = "finished"
OUTCOMES = ("ok", "failed", "partial", "started")
_READ_CHUNK_BYTES = 64 * 1024


class AuditLogError(StreamdError):
    """The audit log cannot be read or appended to."""


@dataclass(frozen=True)
class AuditProblem:
    """One thing wrong with an audit log, at a 1-based line number."""

    line_number: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.message}"


def line_hash(line_bytes: bytes) -> str:
    """SHA-256 hex of one log line, without its trailing newline."""
    return hashlib.sha256(line_bytes).hexdigest()


def current_user() -> str:
    """The OS user name of this process, or `uid N` when the uid has no passwd entry."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def append_audit_entry(
    log_path: str | Path,
    *,
    action: str,
    outcome: str,
    input_path: str | Path | None = None,
    input_sha256: str | None = None,
    tracks: Sequence[int] | None = None,
    span: tuple[float | None, float | None] | None = None,
    message: str = "",
    context: "AuditContext | None" = None,
    event: str = EVENT_FINISHED,
) -> dict[str, object]:
    """Append one entry and fsync; the log is created with mode 0600. Returns the entry written.

    `outcome` is one of OUTCOMES. `span` is (from_seconds, to_seconds), either end None for open.
    `context` (run id, reason, inputs, output, MAC key) makes a keyed entry; without it (a run that
    failed before its key was loaded) the entry has `mac` null.
    Appends are serialized with an exclusive lock on the log file.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if not action:
        raise ValueError("action must be a non-empty string")
    path = Path(log_path)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AuditLogError(f"cannot open audit log {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        file_status = os.fstat(descriptor)
        if not stat.S_ISREG(file_status.st_mode):
            raise AuditLogError(f"audit log {path} is not a regular file")
        last_line, line_count = _last_line_and_count(descriptor, file_status.st_size, path)
        entry: dict[str, object] = {
            "v": AUDIT_FORMAT_VERSION,
            "seq": line_count + 1,
            "prev_hash": GENESIS_HASH if last_line is None else line_hash(last_line),
            "who": current_user(),
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "action": action,
            "input_path": None if input_path is None else str(input_path),
            "input_sha256": input_sha256,
            "tracks": None if tracks is None else [int(track_id) for track_id in tracks],
            "span": None if span is None else [span[0], span[1]],
            "outcome": outcome,
            "message": message,
            "event": event,
            "run": context.run_id if context else None,
            "reason": context.reason if context else None,
            "inputs": context.inputs if context else None,
            "output_path": context.output_path if context else None,
            "key_id": context.key_id if context else None,
        }
        entry["mac"] = entry_mac(context.mac_key, entry) if context and context.mac_key else None
        encoded_line = json.dumps(entry, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
        view = memoryview(encoded_line + b"\n")
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    except OSError as exc:
        raise AuditLogError(f"cannot append to audit log {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(descriptor)
    logger.debug("audit entry %d appended to %s", entry["seq"], path)
    return entry


@dataclass
class AuditContext:
    """What every entry of one restore run repeats: its id, the reason given, the inputs with their
    hashes, the output, and the restore key (id, MAC key) once it is loaded."""

    run_id: str
    reason: str
    inputs: list[dict[str, object]]
    output_path: str | None
    key_id: str | None = None
    mac_key: bytes | None = None


def entry_mac(mac_key: bytes, entry: dict[str, object]) -> str:
    body = {name: value for name, value in entry.items() if name != "mac"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hmac.new(mac_key, canonical.encode("ascii"), hashlib.sha256).hexdigest()


def _last_line_and_count(descriptor: int, size: int, path: Path) -> tuple[bytes | None, int]:
    """The last complete line (without newline) and the number of lines; refuses an unterminated tail."""
    if size == 0:
        return None, 0
    content = _read_all(descriptor, size)
    if not content.endswith(b"\n"):
        raise AuditLogError(
            f"audit log {path} ends with an incomplete line (an interrupted write or an edit); "
            "check it with verify_audit_log before appending"
        )
    lines = content[:-1].split(b"\n")
    return lines[-1], len(lines)


def _read_all(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(descriptor, min(_READ_CHUNK_BYTES, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def audit_log_head(log_path: str | Path) -> str:
    """The hash of the last line (GENESIS_HASH for an empty log); record it elsewhere to detect truncation."""
    path = Path(log_path)
    lines = _read_lines(path)
    return GENESIS_HASH if not lines else line_hash(lines[-1])


def _read_content(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise AuditLogError(f"audit log {path} does not exist") from exc
    except OSError as exc:
        raise AuditLogError(f"cannot read audit log {path}: {exc.strerror or exc}") from exc


def _read_lines(path: Path) -> list[bytes]:
    content = _read_content(path)
    if not content:
        return []
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def verify_audit_log(log_path: str | Path, mac_key: bytes | None = None, key_id: str | None = None) -> list[AuditProblem]:
    """Check the whole chain; returns the problems found (empty when the log is intact).

    With `mac_key` (and the `key_id` of the restore key it comes from), every entry must carry a valid
    MAC under that key; an entry keyed by another restore key is reported as not checked. Runs that
    started and never finished are reported too."""
    content = _read_content(Path(log_path))
    problems: list[AuditProblem] = []
    if not content:
        return problems
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:
        problems.append(AuditProblem(len(lines), "the last line has no newline (interrupted write or edit)"))
    expected_prev_hash = GENESIS_HASH
    open_runs: dict[str, int] = {}
    for line_number, line_bytes in enumerate(lines, start=1):
        problems.extend(_check_line(line_number, line_bytes, expected_prev_hash))
        expected_prev_hash = line_hash(line_bytes)
        entry = _entry_or_none(line_bytes)
        if entry is None:
            continue
        if mac_key is not None:
            problems.extend(_check_mac(line_number, entry, mac_key, key_id))
        run = entry.get("run")
        if isinstance(run, str):
            if entry.get("event") == EVENT_STARTED:
                open_runs[run] = line_number
            else:
                open_runs.pop(run, None)
    for run, line_number in open_runs.items():
        problems.append(AuditProblem(line_number, f"restore run {run} started here and never finished "
                                                  "(killed, or its last entry was removed)"))
    return sorted(problems, key=lambda problem: problem.line_number)


def _entry_or_none(line_bytes: bytes) -> dict[str, object] | None:
    try:
        entry = json.loads(line_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def _check_mac(line_number: int, entry: dict[str, object], mac_key: bytes, key_id: str | None) -> list[AuditProblem]:
    mac = entry.get("mac")
    if not isinstance(mac, str):
        return [AuditProblem(line_number, "entry carries no MAC (written before a key was loaded, or forged)")]
    if key_id is not None and entry.get("key_id") != key_id:
        return [AuditProblem(line_number, f"entry is keyed by restore key {entry.get('key_id')}, "
                                          f"not {key_id}: not checked")]
    if not hmac.compare_digest(mac, entry_mac(mac_key, entry)):
        return [AuditProblem(line_number, "MAC does not match: the entry was edited (and the chain re-hashed)")]
    return []


def _check_line(line_number: int, line_bytes: bytes, expected_prev_hash: str) -> list[AuditProblem]:
    problems: list[AuditProblem] = []
    try:
        entry = json.loads(line_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [AuditProblem(line_number, f"not a JSON entry ({exc}); the line was edited or damaged")]
    if not isinstance(entry, dict):
        return [AuditProblem(line_number, "not a JSON object; the line was edited or damaged")]
    fields = ENTRY_FIELDS if entry.get("v") == LEGACY_AUDIT_FORMAT_VERSION else (*ENTRY_FIELDS, *KEYED_FIELDS)
    missing = [name for name in fields if name not in entry]
    if missing:
        problems.append(AuditProblem(line_number, f"missing field(s) {', '.join(missing)}"))
    unexpected = sorted(set(entry) - set(fields))
    if unexpected:
        problems.append(AuditProblem(line_number, f"unexpected field(s) {', '.join(unexpected)}"))
    if entry.get("v") not in (LEGACY_AUDIT_FORMAT_VERSION, AUDIT_FORMAT_VERSION):
        problems.append(AuditProblem(line_number, f"version {entry.get('v')!r}, expected {AUDIT_FORMAT_VERSION}"))
    if entry.get("prev_hash") != expected_prev_hash:
        if line_number == 1:
            detail = "the first entry does not carry the genesis hash: entries before it were deleted, or it was edited"
        else:
            detail = (
                f"prev_hash does not match line {line_number - 1}: line {line_number - 1} was edited, "
                "or entries between were deleted or reordered"
            )
        problems.append(AuditProblem(line_number, detail))
    sequence_number = entry.get("seq")
    if sequence_number != line_number:
        problems.append(
            AuditProblem(
                line_number,
                f"seq is {sequence_number!r} but this is line {line_number}: "
                "entries were deleted, inserted or reordered",
            )
        )
    return problems

