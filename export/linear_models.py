"""PCA and a linear SVM in numpy: what the LSMM fits in the SDN's bottleneck (paper section 6.2)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Pca:
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (K, D), orthonormal rows, by decreasing variance
    variances: np.ndarray   # (K,)
    explained: float        # share of the total variance the K components hold

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.components.T

    def inverse_direction(self, w: np.ndarray) -> np.ndarray:
        """A direction in PCA coordinates (K,) -> the same direction in the full space (D,).

        PCA is linear, so shifting the compressed feature by w and decompressing equals shifting the
        full feature by components.T @ w (the paper's Figure 12)."""
        return w @ self.components


def fit_pca(x: np.ndarray, components: int) -> Pca:
    """PCA of the rows of x (N, D) through the SVD of the centred data."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    k = min(components, *centred.shape)
    # The N x N Gram matrix is small when N << D; its eigenvectors give the right singular vectors.
    gram = centred @ centred.T
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:k]
    eigenvalues = np.clip(eigenvalues[order], 1e-12, None)
    components_ = (eigenvectors[:, order].T @ centred) / np.sqrt(eigenvalues)[:, None]
    total = float(np.trace(gram))
    return Pca(mean=mean, components=components_, variances=eigenvalues / max(len(x) - 1, 1),
               explained=float(eigenvalues.sum() / total) if total > 0 else 0.0)


@dataclasses.dataclass(frozen=True)
class LinearSvm:
    weights: np.ndarray  # (K,)
    bias: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean((self.decision(x) > 0) == (labels > 0)))


def fit_linear_svm(x: np.ndarray, labels: np.ndarray, c: float = 1.0, iterations: int = 50) -> LinearSvm:
    """L2-regularised squared-hinge linear SVM (the primal of liblinear's L2-loss SVC), by Newton steps.

    Minimises 0.5 |w|^2 + C sum_i max(0, 1 - y_i (w . x_i + b))^2 with y_i in {-1, +1}; the bias is
    not regularised. Features should be roughly unit scale (standardise first)."""
    x = np.asarray(x, np.float64)
    y = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    if len(np.unique(y)) != 2:
        raise ValueError("the SVM needs examples of both classes")
    augmented = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(augmented.shape[1])
    regulariser = np.eye(augmented.shape[1])
    regulariser[-1, -1] = 1e-8
    for _ in range(iterations):
        margins = 1.0 - y * (augmented @ theta)
        active = margins > 0
        a, ya = augmented[active], y[active]
        gradient = regulariser @ theta - 2.0 * c * a.T @ (ya * margins[active])
        hessian = regulariser + 2.0 * c * a.T @ a
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return LinearSvm(weights=theta[:-1], bias=float(theta[-1]))
