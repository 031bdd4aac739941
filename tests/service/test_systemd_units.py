"""The unit files pass `systemd-analyze verify` without a word, and keep their hardening."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import streamd

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_STREAMD = "/opt/streamd/bin/streamd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian package `systemd`)"
)


def installed_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this environment's streamd (verify checks it exists),
    the recorder template instantiated for camera `lobby`."""
    streamd_script = Path(shutil.which("streamd") or Path(streamd.__file__).parents[1] / ".venv/bin/streamd")
    if not streamd_script.exists():
        pytest.skip("the streamd entry point is not installed in this environment")
    copies = []
    for unit, name in (("streamd.service", "streamd.service"), ("streamd-record@.service", "streamd-record@lobby.service")):
        text = (UNIT_DIR / unit).read_text().replace(INSTALLED_STREAMD, str(streamd_script.resolve()))
        (tmp_path / name).write_text(text)
        copies.append(tmp_path / name)
    return copies


@needs_systemd_analyze
def test_units_verify_without_output(tmp_path: Path) -> None:
    units = installed_copies(tmp_path)
    completed = subprocess.run([SYSTEMD_ANALYZE, "verify", *map(str, units)], capture_output=True, text=True,
                               cwd=tmp_path, timeout=60)
    assert completed.returncode == 0 and completed.stderr == "", completed.stderr


@needs_systemd_analyze
def test_security_exposure_stays_low(tmp_path: Path) -> None:
    for unit in installed_copies(tmp_path):
        completed = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", str(unit)], capture_output=True,
                                   text=True, cwd=tmp_path, timeout=60)
        summary = completed.stdout.strip().splitlines()[-1]
        exposure = float(summary.split("level for")[1].split(":")[1].split()[0])
        assert exposure <= 2.0, summary


def test_daemon_unit_settings() -> None:
    lines = {line.strip() for line in (UNIT_DIR / "streamd.service").read_text().splitlines()}
    for required in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                     "CapabilityBoundingSet=", "SystemCallFilter=@system-service", "User=streamd",
                     "LoadCredential=restore.pub:/etc/streamd/restore.pub",
                     "LoadCredential=streamd-host.key:/etc/streamd/host.key"):
        assert required in lines, required
    assert any(line.startswith("WatchdogSec=") for line in lines)
    text = (UNIT_DIR / "streamd.service").read_text() + (UNIT_DIR / "streamd-record@.service").read_text()
    assert "streamd restore" not in text and "restore.key" not in text, "the restore tool is never part of a unit"
    record = (UNIT_DIR / "streamd-record@.service").read_text()
    assert f"ExecStart={INSTALLED_STREAMD} record ${{ENDPOINT}} --out /var/lib/streamd/recordings/%i" in record
    credentials = [line.strip() for line in record.splitlines() if line.startswith("LoadCredential")]
    assert credentials == ["LoadCredential=streamd-host.key:/etc/streamd/host.key"], "only the signing key"
