"""LPIPS, FID and PieAPP: which of them can be computed here.

Each needs pretrained network weights that the project cannot download. A metric is computed only
through its real package and only when that package and its weights are already on this machine;
otherwise the report carries the metric as skipped with the exact reason. No offline stand-in is
computed under these names.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

# Package, and the weight file that package would otherwise download into the torch hub cache.
PERCEPTUAL_REQUIREMENTS = {
    "lpips": ("lpips", "alexnet-owt-7be5be79.pth"),
    "fid": ("pytorch_fid", "pt_inception-2015-12-05-6726825d.pth"),
    "pieapp": ("piq", "PieAPPv0.1.pth"),
}


@dataclass(frozen=True)
class PerceptualStatus:
    metric: str
    available: bool
    reason: str


def torch_hub_checkpoints() -> Path | None:
    """The torch hub checkpoint folder, without importing torch (TORCH_HOME or ~/.cache/torch)."""
    import os

    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def perceptual_status() -> list[PerceptualStatus]:
    """Why each perceptual metric is or is not computed on this machine."""
    checkpoints = torch_hub_checkpoints()
    statuses = []
    for metric, (package, weight_file) in PERCEPTUAL_REQUIREMENTS.items():
        if importlib.util.find_spec(package) is None:
            statuses.append(PerceptualStatus(metric, False, f"skipped: the {package} package is not installed"))
        elif checkpoints is None or not (checkpoints / weight_file).is_file():
            statuses.append(PerceptualStatus(
                metric, False, f"skipped: its weights {weight_file} are not in {checkpoints} and cannot be downloaded"))
        else:
            statuses.append(PerceptualStatus(
                metric, False, f"skipped: {package} and {weight_file} are present, but this version of the "
                               "harness does not run perceptual networks"))
    return statuses
