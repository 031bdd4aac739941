"""LPIPS, FID and PieAPP on batches of images, through their packages' networks, on the CPU.

Images are N x H x W x 3 numpy arrays: uint8 (0-255) or floating point (0-1), RGB unless
`channel_order="bgr"`. Work is done without gradients, in fixed-size chunks.

- LPIPS (Zhang et al. 2018, v0.1, AlexNet trunk): `lpips.LPIPS(net="alex")` on inputs scaled to
  [-1, 1]; one distance per pair, 0 for identical images.
- PieAPP (Prashnani et al. 2018): `piq.PieAPP` (64x64 patches, stride 27) of each distorted image
  against its reference, one score per pair; images need at least 64 pixels on each side.
- FID (Heusel et al. 2017): pytorch-fid's InceptionV3 pool3 features (2048-D, input resized to
  299x299), then the Frechet distance of the two Gaussians,
  |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), with sample covariances (N - 1). With fewer
  images than feature dimensions both covariances are low-rank: writing S1 = X1'X1 and S2 = X2'X2
  (centred features over sqrt(N - 1)), tr((S1 S2)^(1/2)) is the sum of the singular values of X1 X2',
  an N1 x N2 matrix, which gives the same value as pytorch-fid's `calculate_frechet_distance` without
  a 2048 x 2048 matrix square root. With at least as many images as dimensions, pytorch-fid's own
  function is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamd.evaluation.perceptual import networks

CHUNK = 16
FID_DIMS = 2048
PIEAPP_MIN_SIDE = 64
LPIPS_MIN_SIDE = 32


def to_tensor(batch: np.ndarray, channel_order: str = "rgb"):
    """N x H x W x 3 (uint8 0-255 or float 0-1) as an N x 3 x H x W float32 RGB tensor in [0, 1]."""
    import torch

    array = np.asarray(batch)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 images, got shape {array.shape}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', not {channel_order!r}")
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if values.size and (np.nanmin(values) < 0.0 or np.nanmax(values) > 1.0 or not np.isfinite(values).all()):
            raise ValueError("floating-point images must lie in [0, 1]")
    else:
        raise ValueError(f"images must be uint8 or floating point, not {array.dtype}")
    if channel_order == "bgr":
        values = values[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(values.transpose(0, 3, 1, 2)))


def _pairs(a_batch: np.ndarray, b_batch: np.ndarray, channel_order: str, min_side: int, metric: str):
    a, b = to_tensor(a_batch, channel_order), to_tensor(b_batch, channel_order)
    if a.shape != b.shape:
        raise ValueError(f"{metric}: the two batches differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[2:]) < min_side:
        raise ValueError(f"{metric} needs images of at least {min_side}x{min_side}, got {tuple(a.shape[2:])}")
    return a, b


def _pairwise(score_pairs, a, b) -> np.ndarray:
    """One float64 score per pair (a[i], b[i]), computed without gradients in chunks of CHUNK."""
    import torch

    scores = []
    with torch.no_grad():
        for start in range(0, a.shape[0], CHUNK):
            chunk = score_pairs(a[start:start + CHUNK], b[start:start + CHUNK])
            scores.append(chunk.reshape(-1).double().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def lpips_status() -> networks.PerceptualStatus:
    """Whether `lpips_distance` computes here, and why (not)."""
    return networks.load("lpips")[0]


def lpips_distance(a_batch: np.ndarray, b_batch: np.ndarray, *, channel_order: str = "rgb") -> np.ndarray | None:
    """LPIPS (v0.1, AlexNet) between a_batch[i] and b_batch[i], as a float64 array of N distances.

    Both batches: N x H x W x 3, uint8 (0-255) or float (0-1), same shape, at least 32x32; RGB unless
    `channel_order="bgr"`. None when LPIPS cannot run here: `lpips_status().reason` says why.
    Raises ValueError for malformed batches.
    """
    _, network = networks.load("lpips")
    if network is None:
        return None
    a, b = _pairs(a_batch, b_batch, channel_order, LPIPS_MIN_SIDE, "LPIPS")
    return _pairwise(lambda x, y: network(x, y, normalize=True), a, b)


def pieapp_score(distorted_batch: np.ndarray, reference_batch: np.ndarray, *,
                 channel_order: str = "rgb") -> np.ndarray | None:
    """PieAPP of distorted_batch[i] against reference_batch[i] (N scores; lower is closer); None if unavailable."""
    _, network = networks.load("pieapp")
    if network is None:
        return None
    distorted, reference = _pairs(distorted_batch, reference_batch, channel_order, PIEAPP_MIN_SIDE, "PieAPP")
    return _pairwise(network, distorted, reference)


def inception_features(batch: np.ndarray, *, channel_order: str = "rgb") -> np.ndarray | None:
    """pytorch-fid InceptionV3 pool3 features, N x 2048 float64; None if FID is unavailable."""
    import torch

    _, network = networks.load("fid")
    if network is None:
        return None
    images = to_tensor(batch, channel_order)
    features = []
    with torch.no_grad():
        for start in range(0, images.shape[0], CHUNK):
            pooled = network(images[start:start + CHUNK])[0]
            features.append(pooled.reshape(pooled.shape[0], -1).double().numpy())
    return np.concatenate(features) if features else np.zeros((0, FID_DIMS))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets (N1 x D and N2 x D, N >= 2)."""
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be N x D with the same D, got {a.shape} and {b.shape}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError("FID needs at least 2 images in each set")
    if min(a.shape[0], b.shape[0]) >= a.shape[1]:
        networks.import_torchvision()
        from pytorch_fid.fid_score import calculate_frechet_distance

        return float(calculate_frechet_distance(a.mean(axis=0), np.cov(a, rowvar=False),
                                                b.mean(axis=0), np.cov(b, rowvar=False)))
    centred_a = (a - a.mean(axis=0)) / np.sqrt(a.shape[0] - 1)
    centred_b = (b - b.mean(axis=0)) / np.sqrt(b.shape[0] - 1)
    mean_term = float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2))
    trace_sqrt = float(np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum())
    value = mean_term + float(np.sum(centred_a**2)) + float(np.sum(centred_b**2)) - 2.0 * trace_sqrt
    return max(value, 0.0)


def fid(set_a: np.ndarray, set_b: np.ndarray, *, channel_order: str = "rgb") -> float | None:
    """FID between two image sets (each N x H x W x 3, N >= 2); None if FID is unavailable."""
    features_a = inception_features(set_a, channel_order=channel_order)
    if features_a is None:
        return None
    return frechet_distance(features_a, inception_features(set_b, channel_order=channel_order))


__all__: Sequence[str] = ("fid", "frechet_distance", "inception_features", "lpips_distance", "lpips_status",
                          "pieapp_score", "to_tensor")
