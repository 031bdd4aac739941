"""models/manifest.json: which trained files exist, their sha256 and the hyperparameters they need.

Every file is checked against its sha256 before it is used; a missing or mismatched file raises
streamd.errors.ModelError (never random weights, never a silent fallback).

Layout (format_version 1):
{
  "format_version": 1,
  "models": {
    "sdn-tiny": {
      "kind": "sdn", "size": "tiny", "resolution": 64, "password_bits": 32,
      "attribute_names": ["Male", ...],
      "tensor_layout": "NCHW float32 RGB in [-1, 1]; password_bits 0/1; attributes in [0, 1]",
      "files": {"encoder_onnx": {"path": "sdn-tiny-encoder.onnx", "sha256": "...", "bytes": 123}, ...},
      "parameters": {...}, "model_card": "sdn-tiny.md"
    }
  }
}
"""

from __future__ import annotations

import dataclasses
import logging
import json
import os
from pathlib import Path

from streamd.errors import ModelError
from streamd.hashing import file_sha256

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
MODELS_DIR_ENV = "STREAMD_MODELS_DIR"
#: Successful protection rate (dlib identity distance >= 0.6, SDN paper eq. 22-24) a model must have
#: shown on held-out faces before the daemon publishes its surrogates (the issue's paper-level target).
REQUIRED_SPR = 0.95


def default_models_dir() -> Path:
    """$STREAMD_MODELS_DIR, else the `models/` folder of the source checkout."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured)
    return bundled_models_dir()


def bundled_models_dir() -> Path:
    """The `models/` folder of the source checkout: the models that ship with streamd."""
    return Path(__file__).resolve().parents[2] / "models"


@dataclasses.dataclass(frozen=True)
class ModelFile:
    path: str
    sha256: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest; `verified_path` checks a file before handing out its path."""

    name: str
    models_dir: Path
    kind: str
    metadata: dict[str, object]
    files: dict[str, ModelFile]

    def verified_path(self, role: str) -> Path:
        if role not in self.files:
            raise ModelError(f"model {self.name} has no file {role!r} (has {sorted(self.files)})")
        entry = self.files[role]
        path = self.models_dir / entry.path
        if not path.is_file():
            raise ModelError(f"model file {path} ({self.name} {role}) is missing")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ModelError(
                f"model file {path} does not match the manifest: sha256 {actual}, expected {entry.sha256}"
            )
        return path

    def require(self, key: str) -> object:
        if key not in self.metadata:
            raise ModelError(f"manifest entry {self.name} lacks {key!r}")
        return self.metadata[key]

    @property
    def measured_spr(self) -> float | None:
        """Share of held-out faces this model's surrogates protect (identity distance at or above the
        judge's threshold), as measured for its model card; None when never measured."""
        protection = self.metadata.get("protection")
        if not isinstance(protection, dict) or not isinstance(protection.get("spr"), (int, float)):
            return None
        return float(protection["spr"])

    @property
    def attack_recovery(self) -> float | None:
        """Share of held-out faces an attacker recovered (`attacks.recovered_by_any_attack`, written by
        export/attack_*.py); None when the model was never attacked."""
        attacks = self.metadata.get("attacks")
        if not isinstance(attacks, dict) or not isinstance(attacks.get("recovered_by_any_attack"), (int, float)):
            return None
        return float(attacks["recovered_by_any_attack"])

    def check_protects(self, allow_unprotective: bool) -> None:
        """Refuse a model that was not shown to anonymize, unless the operator explicitly allows it: one
        whose protection rate is unmeasured or under REQUIRED_SPR, or whose recorded attacks recover
        more than 1 - REQUIRED_SPR of held-out faces.

        A stream anonymized by such a model would publish recognisable faces: fail closed.
        """
        spr = self.measured_spr
        recovered = self.attack_recovery
        attacked = recovered is not None and recovered > 1.0 - REQUIRED_SPR + 1e-9
        if spr is not None and spr >= REQUIRED_SPR and not attacked:
            return
        required = f"at least {REQUIRED_SPR:.0%} required"
        if spr is None:
            finding = "has no measured protection rate"
        elif spr < REQUIRED_SPR:
            finding = f"protects only {spr:.0%} of held-out faces"
        else:
            finding = f"has recorded attacks that recover {recovered:.0%} of held-out faces"
            required = f"at most {1.0 - REQUIRED_SPR:.0%} allowed"
        message = (f"model {self.name} {finding} ({required}; see its model card "
                   f"{self.metadata.get('model_card', '')}): its surrogates may be recognisable")
        if not allow_unprotective:
            raise ModelError(message + "; set allow_unprotective_model: true to run it anyway, for testing only")
        logger.warning("%s; running it because allow_unprotective_model is set", message)


@dataclasses.dataclass(frozen=True)
class Manifest:
    models_dir: Path
    models: dict[str, ModelEntry]

    def model(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise ModelError(f"model {name!r} is not in {self.models_dir / MANIFEST_NAME} (has {sorted(self.models)})")
        return self.models[name]


def load_manifest(models_dir: str | Path | None = None) -> Manifest:
    """Read and validate models_dir/manifest.json (files are hashed when used, by `verified_path`)."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    path = models_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"models manifest {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read models manifest {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ModelError(f"{path}: format_version must be {MANIFEST_FORMAT_VERSION}")
    models: dict[str, ModelEntry] = {}
    for name, raw in (data.get("models") or {}).items():
        try:
            files = {
                role: ModelFile(path=str(f["path"]), sha256=str(f["sha256"]).lower(), bytes=int(f["bytes"]))
                for role, f in raw["files"].items()
            }
            metadata = {key: value for key, value in raw.items() if key not in ("files", "kind")}
            models[name] = ModelEntry(name=name, models_dir=models_dir, kind=str(raw["kind"]), metadata=metadata,
                                      files=files)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{path}: entry {name!r} is malformed: {error!r}") from error
    return Manifest(models_dir=models_dir, models=models)


def manifest_file_entry(models_dir: Path, filename: str) -> dict[str, object]:
    """The manifest record of one file in models_dir (used by the export scripts)."""
    path = models_dir / filename
    return {"path": filename, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def require_protective_model(models_dir: str | Path | None, model_name: str, allow_unprotective: bool) -> None:
    """`ModelEntry.check_protects` for a model named in a stream's configuration."""
    load_manifest(models_dir).model(model_name).check_protects(allow_unprotective)


def write_manifest_entry(models_dir: Path, name: str, entry: dict[str, object]) -> Path:
    """Set NAME's entry in models_dir/manifest.json, keeping every other model's entry.

    A new entry replaces the old one whole: a measured `protection` of earlier weights does not carry
    over to new ones, so re-exported weights count as unmeasured until measured again.
    """
    manifest_path = models_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "format_version": MANIFEST_FORMAT_VERSION, "models": {}}
    manifest["models"][name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest_path


def record_protection(models_dir: Path, name: str, protection: dict[str, object]) -> Path:
    """Set NAME's measured `protection` in models_dir/manifest.json, leaving the rest of its entry as it is
    (what export/measure_*.py writes after measuring the exported files)."""
    manifest_path = models_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    if name not in manifest.get("models", {}):
        raise ModelError(f"{manifest_path}: no model {name!r} to record a protection rate for")
    manifest["models"][name]["protection"] = protection
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest_path
