"""The weight files of the perceptual metrics: where they must lie, and whether they are the published ones.

Each package loads its network through `torch.hub.load_state_dict_from_url`, which reads
`<torch hub dir>/checkpoints/<file name>` when that file exists and downloads it otherwise. The harness
never lets it download: a metric runs only when its file is already there.

Verification: torchvision-style file names end with the first hex digits of the file's sha256
(`alexnet-owt-7be5be79.pth`). The file on disk is hashed and compared with that prefix. piq's
`PieAPPv0.1.pth` carries no hash in its name; IQA-PyTorch publishes the same file as
`PieAPPv0.1-0937b014.pth`, and that prefix is used. A file whose sha256 does not match is still used,
but its numbers are marked as unverified and not comparable with published ones.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightSpec:
    """One metric's package and the weight file that package loads from the torch hub cache."""

    metric: str
    package: str  # import name
    distribution: str  # pip name
    file_name: str
    sha256_prefix: str  # first hex digits of the published file's sha256
    network: str  # what the file holds


WEIGHT_SPECS: dict[str, WeightSpec] = {
    "lpips": WeightSpec("lpips", "lpips", "lpips", "alexnet-owt-7be5be79.pth", "7be5be79",
                        "torchvision's ImageNet AlexNet, the trunk of LPIPS v0.1 'alex', whose linear layers ship "
                        "inside the lpips package"),
    "fid": WeightSpec("fid", "pytorch_fid", "pytorch-fid", "pt_inception-2015-12-05-6726825d.pth", "6726825d",
                      "the FID InceptionV3, TensorFlow's 2015-12-05 Inception ported by pytorch-fid"),
    "pieapp": WeightSpec("pieapp", "piq", "piq", "PieAPPv0.1.pth", "0937b014",
                         "the PieAPP v0.1 network as piq loads it"),
}


def checkpoint_dir() -> Path:
    """The folder torch.hub reads checkpoints from: `torch.hub.get_dir()/checkpoints`.

    Without torch: `$TORCH_HOME/hub/checkpoints`, or `$XDG_CACHE_HOME/torch/hub/checkpoints`
    (default `~/.cache/torch/hub/checkpoints`), as torch.hub computes it.
    """
    try:
        import torch.hub
    except ImportError:
        torch_home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
        return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"
    return Path(torch.hub.get_dir()) / "checkpoints"


_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
        _digests[key] = digest.hexdigest()
    return _digests[key]


@dataclass(frozen=True)
class WeightCheck:
    """A weight file found in the cache and the outcome of its hash check."""

    path: Path
    sha256: str
    expected_sha256_prefix: str

    @property
    def verified(self) -> bool:
        return self.sha256.startswith(self.expected_sha256_prefix)

    def describe(self) -> dict[str, object]:
        return {"file": str(self.path), "sha256": self.sha256,
                "expected_sha256_prefix": self.expected_sha256_prefix, "verified": self.verified}

    def note(self) -> str:
        if self.verified:
            return f"sha256 verified (starts with {self.expected_sha256_prefix})"
        return (f"sha256 {self.sha256} does not start with {self.expected_sha256_prefix}: unverified weights, not "
                "comparable with published numbers")


def weight_path(spec: WeightSpec) -> Path:
    return checkpoint_dir() / spec.file_name


def check_weights(spec: WeightSpec) -> WeightCheck | None:
    """The hash check of `spec`'s file, or None when the file is not in the cache."""
    path = weight_path(spec)
    if not path.is_file():
        return None
    return WeightCheck(path=path, sha256=file_sha256(path), expected_sha256_prefix=spec.sha256_prefix)
