"""LPIPS, FID and PieAPP through their own packages (lpips, pytorch-fid, piq), on the CPU.

Each needs pretrained network weights that are never downloaded. A metric is computed only when its
package imports and its weight file is already in the torch hub cache
(`$TORCH_HOME/hub/checkpoints/`, see `weights.WEIGHT_SPECS` for the file names); otherwise it is
skipped and its status says exactly why. Weight files are hashed: a file whose sha256 does not match
the published prefix is still used, and its numbers are marked as unverified.

For other code: `lpips_distance(a_batch, b_batch)` (None when LPIPS cannot run) and `lpips_status()`.
Modules: `weights` (files and hashes), `networks` (building the packages' networks), `scores` (the
metrics on image batches), `harness` (the metrics inside `streamd eval`).
"""

from __future__ import annotations

from streamd.evaluation.perceptual.networks import PerceptualStatus, clear_cache, perceptual_status
from streamd.evaluation.perceptual.scores import (
    fid,
    frechet_distance,
    inception_features,
    lpips_distance,
    lpips_status,
    pieapp_score,
)
from streamd.evaluation.perceptual.weights import WEIGHT_SPECS, checkpoint_dir

__all__ = ["WEIGHT_SPECS", "PerceptualStatus", "checkpoint_dir", "clear_cache", "fid", "frechet_distance",
           "inception_features", "lpips_distance", "lpips_status", "perceptual_status", "pieapp_score"]
