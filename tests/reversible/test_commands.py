"""The reversible path's commands: host keys, trust, audit verify and head, and the one-line errors
when a signing key is missing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from restore_helpers import anonymize_reversibly, make_keypair

from streamd.cli import main
from streamd.reversible.keys.host_keys import HOST_KEY_ENV, TrustStore


def test_keys_host_and_trust(tmp_path, capsys):
    assert main(["keys", "host", "--out", str(tmp_path / "host")]) == 0
    out = capsys.readouterr().out
    key_id = out.split("host key id: ")[1].split()[0]
    assert stat.S_IMODE((tmp_path / "host" / "host.key").stat().st_mode) == 0o600
    assert main(["keys", "host", "--out", str(tmp_path / "host")]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err

    store = tmp_path / "trusted"
    assert main(["keys", "trust", str(tmp_path / "host" / "host.pub"), "--store", str(store)]) == 0
    assert f"trusted host key {key_id}" in capsys.readouterr().out
    assert TrustStore(store).key_ids == [key_id]
    assert main(["keys", "trust", str(tmp_path / "host" / "host.key"), "--store", str(store)]) == 1
    assert "only host.pub belongs here" in capsys.readouterr().err


def test_a_restorable_output_without_a_host_key_fails_in_one_line(demo_clip, tmp_path, monkeypatch, capsys):
    _, public_key = make_keypair(tmp_path / "keys")
    monkeypatch.setenv(HOST_KEY_ENV, str(tmp_path / "nowhere" / "host.key"))
    code = main(["anonymize", str(demo_clip.path), "-o", str(tmp_path / "out.mkv"), "--recipient", str(public_key)])
    err = capsys.readouterr().err
    assert code != 0 and "a restorable recording must be signed" in err and "streamd keys host" in err
    assert [line for line in err.splitlines() if line.startswith("streamd:")] == [err.strip().splitlines()[-1]]
    assert not (tmp_path / "out.mkv").exists()


def test_audit_verify_and_head_on_an_intact_log(demo_clip, tmp_path, capsys):
    private_key, public_key = make_keypair(tmp_path / "keys")
    recording = anonymize_reversibly(demo_clip.path, tmp_path / "rec.mkv", [public_key])
    audit = tmp_path / "audit.jsonl"
    assert main(["restore", str(recording), "--key", str(private_key), "-o", str(tmp_path / "out.mkv"),
                 "--tracks", "1", "--reason", "case 7", "--audit-log", str(audit)]) == 0
    capsys.readouterr()
    assert main(["audit", "head", str(audit)]) == 0
    head = capsys.readouterr().out.strip()
    assert main(["audit", "verify", str(audit), "--key", str(private_key), "--head", head]) == 0
    assert "intact and every entry keyed by restore key" in capsys.readouterr().out
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [entry["event"] for entry in entries] == ["started", "finished"]
    assert entries[0]["reason"] == "case 7" and entries[0]["inputs"][0]["sha256"]


def test_python_dash_m_streamd_runs_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "streamd", "audit", "head", str(tmp_path / "none.jsonl")],
                            capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 1 and "does not exist" in result.stderr
