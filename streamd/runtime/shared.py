"""Neural models shared by every camera of the process that runs the same one.

Cameras that use the same model file with the same execution settings get one loaded model instead
of one each: `acquire` builds it for the first camera and counts the others in, `release` closes it
when the last camera lets go. onnxruntime sessions accept concurrent `run` calls from several
threads, and the runners keep no state between calls, so sharing changes no result; it saves one
copy of the weights and of the session's buffers per extra camera (a paper-size SDN is about 1 GB).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


ModelT = TypeVar("ModelT", bound=Closable)


@dataclass
class _Entry:
    model: Any
    users: int


class SharedModels:
    """Reference-counted loaded models by key (what was loaded and how it runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}

    def acquire(self, key: Hashable, build: Callable[[], ModelT]) -> ModelT:
        """The model for `key`, built by `build` if no camera holds it yet. Pair with `release(key)`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(build(), 0)
                self._entries[key] = entry
            elif entry.users:
                logger.info("sharing the loaded model %s with %d other user(s)", key, entry.users)
            entry.users += 1
            return entry.model  # type: ignore[no-any-return]

    def release(self, key: Hashable) -> None:
        """One user is done; the last one closes the model."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise KeyError(f"model {key} is not held")
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]
                entry.model.close()

    def users(self, key: Hashable) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return entry.users if entry else 0


#: The process-wide registry the daemon's neural anonymizers use.
SHARED_MODELS = SharedModels()
