"""The three networks, built by their own packages from weight files already in the torch hub cache.

`load(metric)` returns the metric's status and, when it can run, its network on the CPU in eval mode.
Nothing here downloads: the weight file must exist before a network is constructed, and
`torch.hub.download_url_to_file` is replaced by a function that refuses while a package loads its
weights. Before a package reads a file with full unpickling, the file is opened once with
`torch.load(weights_only=True)`, so a file that is not a plain tensor state dict is rejected unread.

torchvision on PyPI for Linux x86-64 is built against CUDA torch; next to the CPU build of torch its
compiled operators (nms, roi_align, ...) do not load and `import torchvision` stops in the
registration of their fake kernels. The models used here (AlexNet, InceptionV3) are plain Python
modules, so `import_torchvision` declares the two operator schemas that registration needs and
imports torchvision without its compiled operators.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamd.evaluation.perceptual.weights import WEIGHT_SPECS, WeightCheck, WeightSpec, check_weights, checkpoint_dir

logger = logging.getLogger(__name__)

INSTALL_HINT = "install the 'perceptual' extra: pip install -e '.[perceptual]'"
# Operators whose fake kernels torchvision registers even when its compiled library did not load.
TORCHVISION_UNGUARDED_OPERATORS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


class DownloadRefused(RuntimeError):
    """A package tried to download weights; the harness never downloads."""


@dataclass(frozen=True)
class PerceptualStatus:
    """Whether one perceptual metric runs here, and why (not)."""

    metric: str
    available: bool
    reason: str
    package: str | None = None  # "lpips 0.1.4"
    weights: WeightCheck | None = None

    @property
    def comparable(self) -> bool:
        """Computed with the published weights, so its numbers compare with published ones."""
        return self.available and self.weights is not None and self.weights.verified

    def describe(self) -> dict[str, object]:
        return {
            "status": "computed" if self.available else "skipped",
            "reason": self.reason,
            "package": self.package,
            "weights": self.weights.describe() if self.weights is not None else None,
            "comparable_with_published": self.comparable if self.available else None,
        }


_torchvision_lock = threading.Lock()
_schema_library: Any = None


def import_torchvision() -> Any:
    """`import torchvision`, without its compiled operators when they cannot load next to this torch."""
    global _schema_library
    with _torchvision_lock:
        try:
            return importlib.import_module("torchvision")
        except RuntimeError as exc:
            extension = sys.modules.get("torchvision.extension")
            if "torchvision::" not in str(exc) or extension is None or extension._has_ops():
                raise
            first_error = exc
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]
        import torch.library

        if _schema_library is None:
            _schema_library = torch.library.Library("torchvision", "DEF")
            for schema in TORCHVISION_UNGUARDED_OPERATORS:
                _schema_library.define(schema)
        torchvision = importlib.import_module("torchvision")
        logger.info("torchvision %s imported without its compiled operators (%s)", torchvision.__version__,
                    first_error)
        return torchvision


@contextlib.contextmanager
def downloads_refused() -> Iterator[None]:
    """While active, torch.hub raises DownloadRefused instead of downloading anything."""
    import torch.hub

    def refuse(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise DownloadRefused(f"refused to download {url} to {dst}: weights are never downloaded")

    original = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = original


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _build_lpips() -> Any:
    import lpips

    return lpips.LPIPS(net="alex", version="0.1", pretrained=True, verbose=False)


def _build_fid() -> Any:
    from pytorch_fid.inception import InceptionV3

    return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True,
                       use_fid_inception=True)


def _build_pieapp() -> Any:
    from piq import PieAPP

    return PieAPP(reduction="none", data_range=1.0)


BUILDERS = {"lpips": _build_lpips, "fid": _build_fid, "pieapp": _build_pieapp}


def _plain_state_dict_error(check: WeightCheck) -> str | None:
    import torch

    try:
        state = torch.load(check.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reason the restricted loader refuses is reported
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        return "it does not hold a dict of tensors"
    return None


def _unavailable_reason(spec: WeightSpec) -> str | None:
    """Why `spec`'s metric cannot run, from what can be seen without importing it; None if it may."""
    for package, distribution in ((spec.package, spec.distribution), ("torchvision", "torchvision"),
                                  ("torch", "torch")):
        if importlib.util.find_spec(package) is None:
            return f"skipped: the {distribution} package is not installed ({INSTALL_HINT})"
    return None


# (metric, weight file) -> ((size, mtime), status, network)
_networks: dict[tuple[str, str], tuple[tuple[int, int], PerceptualStatus, Any]] = {}


def load(metric: str) -> tuple[PerceptualStatus, Any]:
    """The status of `metric` and, when available, its network (CPU, eval mode; None otherwise).

    Networks are kept, per weight file, for as long as that file stays the same.
    """
    spec = WEIGHT_SPECS[metric]
    reason = _unavailable_reason(spec)
    if reason is not None:
        return PerceptualStatus(metric, False, reason), None
    package = f"{spec.distribution} {_version(spec.distribution)}"
    check = check_weights(spec)
    if check is None:
        return PerceptualStatus(
            metric, False, f"skipped: its weight file {spec.file_name} is not in {checkpoint_dir()}; weights are "
                           f"never downloaded: put the official file there to compute it (it holds {spec.network})",
            package=package), None
    stat = check.path.stat()
    key, version = (metric, str(check.path)), (stat.st_size, stat.st_mtime_ns)
    cached = _networks.get(key)
    if cached is not None and cached[0] == version:
        return cached[1], cached[2]
    status, network = _build(spec, check, package)
    _networks[key] = (version, status, network)
    return status, network


def _build(spec: WeightSpec, check: WeightCheck, package: str) -> tuple[PerceptualStatus, Any]:
    def skipped(reason: str) -> tuple[PerceptualStatus, None]:
        return PerceptualStatus(spec.metric, False, f"skipped: {reason}", package=package, weights=check), None

    try:
        import_torchvision()
        importlib.import_module(spec.package)
    except Exception as exc:  # noqa: BLE001 - an unusable package is a skipped metric, with its error
        return skipped(f"importing {spec.package} failed: {type(exc).__name__}: {exc}")
    problem = _plain_state_dict_error(check)
    if problem is not None:
        return skipped(f"{check.path} is not a plain tensor state dict ({problem})")
    try:
        with downloads_refused(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = BUILDERS[spec.metric]().eval()
    except DownloadRefused as exc:
        return skipped(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a state dict that does not fit the network
        return skipped(f"building the network from {check.path} failed: {type(exc).__name__}: {exc}")
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    reason = f"computed with {package} from {check.path}, {check.note()}"
    logger.info("%s: %s", spec.metric, reason)
    return PerceptualStatus(spec.metric, True, reason, package=package, weights=check), network


def perceptual_status() -> list[PerceptualStatus]:
    """Whether each perceptual metric (lpips, fid, pieapp) runs here, and why (not)."""
    return [load(metric)[0] for metric in WEIGHT_SPECS]


def clear_cache() -> None:
    """Forget the loaded networks (they are rebuilt on next use)."""
    _networks.clear()
