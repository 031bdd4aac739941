"""The daemon's protection gate reads both the measured protection rate and the recorded attacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamd.errors import ModelError
from streamd.runtime.manifest import load_manifest


def entry_with(tmp_path: Path, protection: dict | None, attacks: dict | None):
    metadata: dict[str, object] = {"kind": "cyclegan", "files": {}, "model_card": "m.md"}
    if protection is not None:
        metadata["protection"] = protection
    if attacks is not None:
        metadata["attacks"] = attacks
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "models": {"m": metadata}}))
    return load_manifest(tmp_path).model("m")


@pytest.mark.parametrize(("spr", "recovered", "runs"), [
    (1.0, None, True),          # never attacked: the rate alone decides
    (0.99, 0.0481, True),       # attacks recover under 5%
    (0.99, 0.05, True),         # exactly at the limit
    (1.0, 0.0834, False),       # a plain matcher is defeated, an attacker is not
    (0.90, 0.0, False),         # under the rate
    (None, 0.0, False),         # never measured
])
def test_gate(tmp_path: Path, spr, recovered, runs: bool) -> None:
    entry = entry_with(tmp_path, None if spr is None else {"spr": spr},
                       None if recovered is None else {"recovered_by_any_attack": recovered})
    if runs:
        entry.check_protects(allow_unprotective=False)
    else:
        with pytest.raises(ModelError, match="allow_unprotective_model"):
            entry.check_protects(allow_unprotective=False)
    entry.check_protects(allow_unprotective=True)


def test_the_refusal_names_the_attack_share(tmp_path: Path) -> None:
    entry = entry_with(tmp_path, {"spr": 1.0}, {"recovered_by_any_attack": 0.9583})
    with pytest.raises(ModelError, match="recorded attacks that recover 96% of held-out faces.*at most 5% allowed"):
        entry.check_protects(allow_unprotective=False)
