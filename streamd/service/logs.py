"""Log output of the service: readable text lines, or one JSON object per line (`log_format: json`).

A JSON record holds `time` (ISO 8601, UTC), `level`, `logger`, `thread`, `message`, and `camera`
when the logger is a camera's child logger (`streamd.<module>.<camera id>`) or the thread is a
camera's worker (`camera-<id>`); `exception` holds the traceback when there is one.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, no newlines inside."""

    def __init__(self, camera_ids: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.camera_ids = camera_ids

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        camera_id = self._camera_of(record)
        if camera_id is not None:
            entry["camera"] = camera_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def _camera_of(self, record: logging.LogRecord) -> str | None:
        if record.threadName and record.threadName.startswith("camera-"):
            return record.threadName.removeprefix("camera-")
        last_part = record.name.rsplit(".", 1)[-1]
        return last_part if last_part in self.camera_ids else None


def configure_logging(log_format: str, level: str, camera_ids: frozenset[str] = frozenset()) -> None:
    """Send all records at `level` and above to stderr in `log_format` ("text" or "json")."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(camera_ids) if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
