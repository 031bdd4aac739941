"""Where restored footage is written: private, never over an existing file by accident, never left half.

A restore writes inside a private work folder beside the output (`.streamd-restore-<pid>-<random>`,
mode 0700, holding a lock for the run); the finished file (mode 0600) is moved to the output path
at the end. Any failure removes the folder. A run killed outright (SIGKILL, power loss) leaves the
folder behind; the next restore into the same folder removes every such folder whose lock is free.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
from pathlib import Path

from streamd.errors import StreamdError

logger = logging.getLogger(__name__)

WORK_PREFIX = ".streamd-restore-"
LOCK_NAME = "lock"
PRIVATE_FILE_MODE = 0o600


class OutputError(StreamdError):
    """The output path cannot be used as asked."""


def remove_stale_work_folders(folder: Path) -> list[Path]:
    """Remove the work folders of restores that are no longer running; returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for candidate in folder.glob(f"{WORK_PREFIX}*"):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        lock_path = candidate / LOCK_NAME
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            descriptor = None
        except OSError:
            continue
        try:
            if descriptor is not None:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
            logger.warning("removed %s, left by a restore that did not finish", candidate)
        finally:
            if descriptor is not None:
                os.close(descriptor)
    return removed


class PrivateOutput:
    """A private place to write one output file; `commit()` moves it to `target`, `discard()` removes it."""

    def __init__(self, target: Path, force: bool = False) -> None:
        self.target = Path(target)
        folder = self.target.parent if str(self.target.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"{self.target}: output folder {folder} does not exist")
        if self.target.is_dir():
            raise OutputError(f"{self.target}: is a folder, cannot write a file there")
        if (self.target.exists() or self.target.is_symlink()) and not force:
            raise OutputError(f"{self.target} already exists; refusing to replace it (give --force to replace it)")
        remove_stale_work_folders(folder)
        self.work_folder = folder / f"{WORK_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self.work_folder.mkdir(mode=0o700)
            self._lock = os.open(self.work_folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot write in {folder}: {exc.strerror or exc}") from None
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = self.work_folder / self.target.name

    def commit(self) -> Path:
        os.chmod(self.path, PRIVATE_FILE_MODE)
        try:
            os.replace(self.path, self.target)
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.target}: cannot move the restored file into place: {exc.strerror}") from None
        self.discard()
        return self.target

    def discard(self) -> None:
        """Remove the work folder and what is in it (safe to call twice)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
        shutil.rmtree(self.work_folder, ignore_errors=True)
