"""Runs a torch nn.Module through the ModelRunner interface (needs the `train` extra)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from streamd.errors import ModelError
from streamd.runtime.base import ModelRunner, TensorSpec

logger = logging.getLogger(__name__)


class TorchRunner(ModelRunner):
    """`module(*inputs in spec order)` returns one tensor or a tuple matching `output_names`."""

    backend = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        input_specs: Sequence[TensorSpec],
        output_names: Sequence[str],
        device: str = "cpu",
        warm_up_batch: int = 1,
    ) -> None:
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.input_specs = tuple(input_specs)
        self.output_names = tuple(output_names)
        self.warm_up(warm_up_batch)

    @torch.inference_mode()
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_inputs(inputs)
        tensors = [
            torch.from_numpy(np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype)).to(self.device)
            for spec in self.input_specs
        ]
        try:
            outputs = self.module(*tensors)
        except RuntimeError as error:
            raise ModelError(f"torch model failed: {error}") from error
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if len(outputs) != len(self.output_names):
            raise ModelError(f"torch model returned {len(outputs)} outputs, expected {len(self.output_names)}")
        return {name: value.detach().float().cpu().numpy() for name, value in zip(self.output_names, outputs)}
