"""The archive job's manifest: which inputs are done, from which input bytes and settings.

It lives in the output folder (`streamd-archive.json`) and is rewritten atomically after every file,
so a job killed at any moment can be run again: an input whose entry is `done` with the same input
hash, the same settings digest, and an output file whose hash matches is skipped; everything else is
redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamd.config import CameraConfig
from streamd.errors import SinkError
from streamd.hashing import file_sha256

MANIFEST_NAME = "streamd-archive.json"
MANIFEST_VERSION = 1
#: Camera settings that do not change what a file's output looks like.
_SETTINGS_IGNORED = ("id", "source", "outputs", "resources")


def settings_digest(camera: CameraConfig) -> str:
    """SHA-256 of the settings that decide an output's pixels (detector, tracker, anonymizer, ...)."""
    settings = camera.model_dump(mode="json", exclude=set(_SETTINGS_IGNORED))
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ManifestEntry:
    input_sha256: str
    settings: str
    output: str
    status: str  # "done" or "failed"
    frames: int = 0
    faces: int = 0
    output_sha256: str | None = None
    error: str | None = None
    finished_at: float = 0.0


class Manifest:
    """Entries by input path relative to the input folder."""

    def __init__(self, path: Path, entries: dict[str, ManifestEntry] | None = None) -> None:
        self.path = path
        self.entries = entries or {}

    @classmethod
    def load(cls, output_dir: Path) -> "Manifest":
        path = output_dir / MANIFEST_NAME
        if not path.exists():
            return cls(path)
        try:
            document = json.loads(path.read_text())
            entries = {name: ManifestEntry(**fields) for name, fields in document["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SinkError(f"{path}: unreadable archive manifest ({exc}); move it away to start the job afresh") from None
        return cls(path, entries)

    def is_done(self, name: str, input_sha256: str, settings: str, output_path: Path) -> bool:
        entry = self.entries.get(name)
        if entry is None or entry.status != "done":
            return False
        if entry.input_sha256 != input_sha256 or entry.settings != settings or not output_path.exists():
            return False
        return entry.output_sha256 == file_sha256(output_path)

    def record(self, name: str, entry: ManifestEntry) -> None:
        entry.finished_at = time.time()
        self.entries[name] = entry
        self.save()

    def save(self) -> None:
        document: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "entries": {name: asdict(entry) for name, entry in sorted(self.entries.items())},
        }
        temporary = self.path.with_name(f".{self.path.name}.partial")
        try:
            temporary.write_text(json.dumps(document, indent=2) + "\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            raise SinkError(f"{self.path}: cannot write the archive manifest: {exc.strerror}") from None
