"""Parameter and multiply-accumulate (MAC) counts of torch networks, from forward hooks.

One forward pass with the given inputs; every Conv2d, Linear and Upsample that runs adds its MACs:

- Conv2d: output elements x (input channels / groups) x kernel height x kernel width (bias not counted);
- Linear: output elements x input features (bias not counted);
- Upsample: nearest 0; bilinear 4 per output element (a weighted sum of 4 neighbours); bicubic 16.

Element-wise work (activations, residual additions, clamps) is not counted, as is usual for MAC
figures. A module that runs twice in one pass (a shared network) is counted each time it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

UPSAMPLE_MACS_PER_OUTPUT = {"nearest": 0, "bilinear": 4, "bicubic": 16}


@dataclasses.dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass, by layer type."""

    conv: int = 0
    linear: int = 0
    upsample: int = 0

    @property
    def total(self) -> int:
        return self.conv + self.linear + self.upsample

    def to_dict(self) -> dict[str, int]:
        return {"conv": self.conv, "linear": self.linear, "upsample": self.upsample, "total": self.total}


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kernel_h, kernel_w = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kernel_h * kernel_w


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def _upsample_macs(module: nn.Upsample, output: torch.Tensor) -> int:
    if module.mode not in UPSAMPLE_MACS_PER_OUTPUT:
        raise ValueError(f"no MAC rule for Upsample mode {module.mode!r}")
    return output.numel() * UPSAMPLE_MACS_PER_OUTPUT[module.mode]


def count_macs(module: nn.Module, inputs: Sequence[object]) -> MacCount:
    """MACs of `module(*inputs)` for the batch given (pass batch 1 for per-sample figures)."""
    totals = {"conv": 0, "linear": 0, "upsample": 0}

    def hook(kind: str, rule):
        def record(layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            totals[kind] += rule(layer, output)

        return record

    handles = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            handles.append(layer.register_forward_hook(hook("conv", _conv_macs)))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(hook("linear", _linear_macs)))
        elif isinstance(layer, nn.Upsample):
            handles.append(layer.register_forward_hook(hook("upsample", _upsample_macs)))
        elif isinstance(layer, (nn.ConvTranspose2d, nn.Conv1d, nn.Conv3d)):
            raise ValueError(f"no MAC rule for {type(layer).__name__}")
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return MacCount(**totals)
