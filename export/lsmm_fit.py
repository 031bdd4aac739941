"""Fit the LSMM's manipulation directions in an SDN's bottleneck (paper section 6.2, Figure 11).

For every face of the fitting set and many random passwords, the encoder's bottleneck
f = Fext(crop) + IdentityNetwork(password, attributes) is collected. PCA compresses it, a linear SVM
per attribute separates the faces with the attribute from those without, and the SVM's normal is
mapped back to the full bottleneck (PCA is linear, Figure 12). Each direction is scaled so that
degree 1 is one standard deviation of all collected bottlenecks along it.

Labels, two sources:
- `measured` (the offline default): the attribute is measured on each generated surrogate
  (export/face_measures.py). Bottlenecks and measures are centred per face before fitting, so the SVM
  sees only what the password's identity code changes in the surrogate of a fixed face: the direction
  says which bottleneck change makes the *generated* face smile, not which *input* faces smile (a
  shift along the latter moves the Erasing Network's residual, which need not move the attribute).
  Per attribute, the top and bottom `label_share` of the centred measures are the two classes.
- `dataset`: the dataset's own binary labels of the input faces (CelebA's attribute file), repeated
  for every password; no centring.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from export.face_measures import ATTRIBUTE_MEASURES, CropLandmarker, measure_attributes
from export.linear_models import fit_linear_svm, fit_pca
from export.sdn_data import bgr_to_tensor, tensor_to_bgr
from streamd.nets.sdn import SdnGenerators

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FitSettings:
    passwords_per_face: int = 12
    components: int = 64
    label_share: float = 0.3
    svm_c: float = 0.01
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Collected:
    latents: np.ndarray      # (N * P, D) float32
    surrogates: np.ndarray   # (N * P, S, S, 3) uint8 BGR
    face_index: np.ndarray   # (N * P,) int, which input face each row comes from


@torch.no_grad()
def collect(generators: SdnGenerators, crops_bgr: Sequence[np.ndarray], settings: FitSettings) -> Collected:
    """Bottlenecks and surrogates of every face under `passwords_per_face` random passwords."""
    config = generators.config
    generator = torch.Generator().manual_seed(settings.seed)
    attributes = torch.zeros(settings.passwords_per_face, config.num_attributes)
    latents, surrogates, face_index = [], [], []
    for index, crop in enumerate(tqdm(crops_bgr, desc="bottleneck features", unit="face")):
        images = bgr_to_tensor(crop)[None].repeat(settings.passwords_per_face, 1, 1, 1)
        bits = torch.randint(0, 2, (settings.passwords_per_face, config.password_bits), generator=generator).float()
        latents.append(generators.bottleneck(images, bits, attributes).flatten(1).numpy())
        surrogates.extend(tensor_to_bgr(image) for image in generators.anonymize(images, bits, attributes))
        face_index.extend([index] * settings.passwords_per_face)
    return Collected(np.concatenate(latents).astype(np.float32), np.stack(surrogates), np.array(face_index))


def centre_per_face(values: np.ndarray, face_index: np.ndarray) -> np.ndarray:
    """Each row minus the mean (ignoring NaN) of the rows of the same face."""
    centred = np.array(values, np.float64, copy=True)
    for face in np.unique(face_index):
        rows = face_index == face
        with np.errstate(invalid="ignore"):
            centred[rows] -= np.nanmean(centred[rows], axis=0) if np.any(~np.isnan(centred[rows])) else 0.0
    return centred


def measured_labels(collected: Collected, crop_size: int) -> dict[str, np.ndarray]:
    """{attribute: (N * P,) measure of each surrogate}, NaN where CenterFace finds no face."""
    landmarker = CropLandmarker(crop_size)
    try:
        chunks = [measure_attributes(landmarker, collected.surrogates[start:start + 64])
                  for start in tqdm(range(0, len(collected.surrogates), 64), desc="attribute measures", unit="batch")]
    finally:
        landmarker.close()
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in ATTRIBUTE_MEASURES}


def binary_classes(values: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels): rows in the lowest or highest `share` of the finite values, labels 1 for the highest."""
    finite = np.isfinite(values)
    low, high = np.nanpercentile(values[finite], [100 * share, 100 * (1 - share)])
    rows = np.flatnonzero(finite & ((values <= low) | (values >= high)))
    labels = (values[rows] >= high).astype(np.float64)
    if len(np.unique(labels)) != 2:
        raise ValueError("the measured attribute does not vary enough to form two classes")
    return rows, labels


def fit_direction(latents: np.ndarray, rows: np.ndarray, labels: np.ndarray, all_latents: np.ndarray,
                  settings: FitSettings) -> tuple[np.ndarray, dict[str, float]]:
    """PCA of `latents`, SVM on the labelled rows (standardised PCA coordinates); returns the degree-1
    direction (D,) and fitting statistics."""
    pca = fit_pca(latents, settings.components)
    coordinates = pca.transform(latents)
    scale = coordinates.std(axis=0) + 1e-12
    svm = fit_linear_svm(coordinates[rows] / scale, labels, c=settings.svm_c)
    direction = pca.inverse_direction(svm.weights / scale)
    direction /= np.linalg.norm(direction)
    sigma = float(np.std(all_latents @ direction))
    stats = {"pca_components": int(pca.components.shape[0]), "pca_explained_variance": round(pca.explained, 4),
             "svm_training_accuracy": round(svm.accuracy(coordinates[rows] / scale, labels), 4),
             "labelled_rows": int(len(rows)), "degree_unit": round(sigma, 4)}
    return (direction * sigma).astype(np.float32), stats


def fit_measured_directions(generators: SdnGenerators, crops_bgr: Sequence[np.ndarray], settings: FitSettings
                            ) -> tuple[tuple[str, ...], np.ndarray, dict[str, object]]:
    """Directions for the measured attributes (smiling, mouth_open) from labels on the surrogates."""
    collected = collect(generators, crops_bgr, settings)
    measures = measured_labels(collected, generators.config.resolution)
    centred_latents = centre_per_face(collected.latents, collected.face_index).astype(np.float32)
    directions, stats = [], {}
    for name in ATTRIBUTE_MEASURES:
        rows, labels = binary_classes(centre_per_face(measures[name], collected.face_index), settings.label_share)
        direction, stats[name] = fit_direction(centred_latents, rows, labels, collected.latents, settings)
        directions.append(direction)
        logger.info("direction %s: %s", name, stats[name])
    return ATTRIBUTE_MEASURES, np.stack(directions), {"labels": "measured on the surrogates, centred per face",
                                                      "faces": len(crops_bgr), "statistics": stats}


def fit_dataset_directions(generators: SdnGenerators, crops_bgr: Sequence[np.ndarray], labels: dict[str, np.ndarray],
                           settings: FitSettings) -> tuple[tuple[str, ...], np.ndarray, dict[str, object]]:
    """Directions from the dataset's binary labels {name: (N,) 0/1} of the input faces."""
    collected = collect(generators, crops_bgr, settings)
    names, directions, stats = tuple(labels), [], {}
    for name in names:
        per_row = np.asarray(labels[name], np.float64)[collected.face_index]
        rows = np.arange(len(per_row))
        direction, stats[name] = fit_direction(collected.latents, rows, per_row, collected.latents, settings)
        directions.append(direction)
        logger.info("direction %s: %s", name, stats[name])
    return names, np.stack(directions), {"labels": "dataset labels of the input faces", "faces": len(crops_bgr),
                                         "statistics": stats}
