"""Choosing a bank of mutually distinct synthetic identities from screened candidates (numpy only).

`pairwise_distances` turns face-recognizer embeddings into a distance matrix; `farthest_point_order`
grows a bank greedily: first the candidate farthest on average from all others, then each time the
candidate whose nearest chosen identity is farthest (farthest-point selection), so the smallest
distance inside the bank stays as large as the candidates allow.
"""

from __future__ import annotations

import numpy as np


def pairwise_distances(embeddings: np.ndarray) -> np.ndarray:
    """(N, N) Euclidean distances of (N, D) embeddings."""
    values = np.asarray(embeddings, np.float64)
    if values.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {values.shape}")
    squared = (values**2).sum(axis=1)
    gram = squared[:, None] + squared[None, :] - 2.0 * values @ values.T
    distances = np.sqrt(np.clip(gram, 0.0, None))
    np.fill_diagonal(distances, 0.0)
    return distances


def distances_to(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) Euclidean distances of (N, D) embeddings to one (D,) embedding."""
    values = np.asarray(embeddings, np.float64)
    target = np.asarray(reference, np.float64)
    if values.ndim != 2 or target.shape != (values.shape[1],):
        raise ValueError(f"embeddings must be (N, D) and the reference (D,), got {values.shape} and {target.shape}")
    return np.linalg.norm(values - target, axis=1)


def farthest_point_order(distances: np.ndarray, count: int) -> list[int]:
    """Indices of `count` candidates chosen greedily so that the closest pair among them is far apart."""
    matrix = np.asarray(distances, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"distances must be a square matrix, got {matrix.shape}")
    if not 1 <= count <= matrix.shape[0]:
        raise ValueError(f"count must be in 1..{matrix.shape[0]}, got {count}")
    chosen = [int(np.argmax(matrix.mean(axis=1)))]
    nearest = matrix[:, chosen[0]].copy()
    while len(chosen) < count:
        nearest[chosen] = -np.inf
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, matrix[:, pick])
    return chosen
