"""systemd's notification protocol (sd_notify) without libsystemd.

systemd passes the path of an AF_UNIX datagram socket in `NOTIFY_SOCKET` (a leading `@` means the
Linux abstract namespace) and, with `WatchdogSec=`, the watchdog period in `WATCHDOG_USEC` and the
process it is meant for in `WATCHDOG_PID`. A notification is one datagram of newline-separated
`KEY=VALUE` lines: `READY=1`, `WATCHDOG=1`, `STATUS=...`, `STOPPING=1`, `RELOADING=1`.

Without `NOTIFY_SOCKET` (not started by systemd) the notifier is disabled and says so once in the log.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def socket_address(notify_socket: str) -> str | bytes:
    """The address to send to: a filesystem path, or bytes starting with NUL for '@name'."""
    if notify_socket.startswith("@"):
        return b"\0" + notify_socket[1:].encode()
    if notify_socket.startswith("/"):
        return notify_socket
    raise ValueError(f"NOTIFY_SOCKET {notify_socket!r} is neither an absolute path nor an abstract name (@...)")


def watchdog_period_s(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """The watchdog period systemd asked for, or None when there is none for this process."""
    usec_text = environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid and int(watchdog_pid) != (os.getpid() if pid is None else pid):
        return None
    usec = int(usec_text)
    if usec <= 0:
        raise ValueError(f"WATCHDOG_USEC must be a positive number of microseconds, not {usec_text!r}")
    return usec / 1_000_000


class SystemdNotifier:
    """Sends notifications to systemd; every method is a no-op when `enabled` is False."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        notify_socket = environ.get("NOTIFY_SOCKET", "")
        self.watchdog_period_s = watchdog_period_s(environ)
        self.sent = 0
        self.send_errors = 0
        self._address: str | bytes | None = None
        self._socket: socket.socket | None = None
        if notify_socket:
            self._address = socket_address(notify_socket)
            # Non-blocking: a manager that does not read (its queue holds about 10 datagrams) must not
            # stall the service; such a notification is dropped, logged and counted in send_errors.
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            logger.info(
                "systemd notifications to %s%s",
                notify_socket,
                f", watchdog every {self.watchdog_period_s:g} s" if self.watchdog_period_s else "",
            )
        else:
            logger.info("NOTIFY_SOCKET is not set: not started by systemd, no notifications sent")

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the period, as sd_watchdog_enabled(3) recommends."""
        return None if self.watchdog_period_s is None else self.watchdog_period_s / 2

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one datagram; False when systemd could not be reached (logged, counted)."""
        if self._socket is None or self._address is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            self.send_errors += 1
            logger.warning("sd_notify %s failed: %s", lines[0] if lines else "", exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
