"""Latent manipulation directions of an SDN model (the LSMM of the SDN paper, section 6.2).

`export/lsmm.py` fits one direction per attribute in the encoder's bottleneck (PCA, then a linear
SVM, mapped back to the full latent) and saves them next to the model as NAME-lsmm.npz, listed in
the model's manifest entry as `files.lsmm_directions` with its sha256. A stream that asks for a
manipulation (`anonymizer.sdn.manipulations: {smiling: 1.0}`) adds

    latent_shift = sum over named directions of degree * direction

to every face's bottleneck inside the encoder graph. Each stored direction is already scaled so that
degree 1 is one standard deviation of the fitting set's bottlenecks along it.

File layout (numpy .npz, no pickled objects):
  names       (K,) str, the direction names (e.g. smiling, mouth_open)
  directions  (K, C, H, W) float32, degree-1 shifts of the bottleneck
  metadata    () str, JSON: how they were fitted (weights sha256, labels, PCA size, SVM accuracy, ...)
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from streamd.errors import ModelError
from streamd.runtime.manifest import load_manifest

DIRECTIONS_ROLE = "lsmm_directions"
DIRECTIONS_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class LatentDirections:
    names: tuple[str, ...]
    directions: np.ndarray
    metadata: dict[str, object]
    sha256: str

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.directions.shape[1:])  # type: ignore[return-value]

    def check_degrees(self, degrees: Mapping[str, float]) -> None:
        """ValueError naming the problem when a direction is unknown or a degree is not finite."""
        unknown = sorted(set(degrees) - set(self.names))
        if unknown:
            raise ValueError(f"no manipulation direction {', '.join(unknown)}; this model has "
                             f"{', '.join(self.names) or 'none'}")
        for name, degree in degrees.items():
            if not isinstance(degree, (int, float)) or not math.isfinite(float(degree)):
                raise ValueError(f"manipulation degree of {name!r} must be a finite number, got {degree!r}")

    def shift(self, degrees: Mapping[str, float]) -> np.ndarray:
        """(C, H, W) float32: the sum of degree * direction over the named directions."""
        self.check_degrees(degrees)
        total = np.zeros(self.latent_shape, np.float32)
        for name, degree in degrees.items():
            total += np.float32(degree) * self.directions[self.names.index(name)]
        return total


def save_directions(path: Path, names: tuple[str, ...], directions: np.ndarray, metadata: dict[str, object]) -> None:
    """Write a directions file (see the module docstring)."""
    if directions.ndim != 4 or directions.shape[0] != len(names):
        raise ValueError(f"directions must be (K={len(names)}, C, H, W), got {directions.shape}")
    document = json.dumps({"format": DIRECTIONS_FORMAT, **metadata}, sort_keys=True)
    with open(path, "wb") as handle:
        np.savez(handle, names=np.array(names, dtype=str), directions=directions.astype(np.float32),
                 metadata=np.array(document))


def read_directions(path: Path, sha256: str) -> LatentDirections:
    """Parse a directions file already checked against `sha256`; ModelError when malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = tuple(str(name) for name in data["names"])
            directions = np.asarray(data["directions"], np.float32)
            metadata = json.loads(str(data["metadata"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ModelError(f"{path} is not a latent directions file: {error}") from error
    if metadata.get("format") != DIRECTIONS_FORMAT:
        raise ModelError(f"{path}: directions format {metadata.get('format')!r}, expected {DIRECTIONS_FORMAT}")
    if directions.ndim != 4 or directions.shape[0] != len(names) or len(set(names)) != len(names):
        raise ModelError(f"{path}: {len(names)} names for directions of shape {directions.shape}")
    if not np.isfinite(directions).all():
        raise ModelError(f"{path}: directions hold non-finite values")
    return LatentDirections(names=names, directions=directions, metadata=metadata, sha256=sha256)


def load_directions(models_dir: str | Path | None, model_name: str) -> LatentDirections:
    """The manipulation directions of `model_name`, checked against the manifest's sha256 and against
    the weights they were fitted for (ModelError when absent, tampered with or stale)."""
    entry = load_manifest(models_dir).model(model_name)
    if DIRECTIONS_ROLE not in entry.files:
        raise ModelError(f"model {model_name} has no manipulation directions (files.{DIRECTIONS_ROLE}); "
                         "fit them with python -m export.lsmm all")
    path = entry.verified_path(DIRECTIONS_ROLE)
    directions = read_directions(path, entry.files[DIRECTIONS_ROLE].sha256)
    weights = entry.files.get("torch_weights")
    fitted_for = directions.metadata.get("weights_sha256")
    if weights is not None and fitted_for != weights.sha256:
        raise ModelError(f"{path} was fitted for weights {fitted_for}, but model {model_name} has weights "
                         f"{weights.sha256}: refit them with python -m export.lsmm all")
    return directions
