"""The interface every model runner implements."""

from __future__ import annotations

import abc
import dataclasses
import logging

import numpy as np

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one model input or output; -1 marks the dynamic batch axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    def example(self, batch_size: int) -> np.ndarray:
        shape = tuple(batch_size if dim < 0 else dim for dim in self.shape)
        return np.zeros(shape, dtype=self.dtype)


class ModelRunner(abc.ABC):
    """Runs one model graph: named numpy arrays in, named numpy arrays out.

    Implementations call `warm_up` at the end of their constructor, so the first real frame does not
    pay for lazy initialisation. `run` raises streamd.errors.ModelError when the backend fails.
    """

    backend: str
    #: The graph's inputs, in order (set by the constructor).
    input_specs: tuple[TensorSpec, ...]
    #: The graph's outputs, in order (set by the constructor).
    output_names: tuple[str, ...]

    @abc.abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on `inputs` (every input name present); returns every output by name."""

    def warm_up(self, batch_size: int = 1, repeats: int = 2) -> None:
        """Run the graph on zeros so kernels, allocations and engines are ready."""
        example = {spec.name: spec.example(batch_size) for spec in self.input_specs}
        for _ in range(repeats):
            self.run(example)
        logger.debug("%s runner warmed up with batch %d", self.backend, batch_size)

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Raise ValueError when inputs are missing, unexpected, or of the wrong rank or size."""
        expected = {spec.name for spec in self.input_specs}
        if set(inputs) != expected:
            raise ValueError(f"inputs must be exactly {sorted(expected)}, got {sorted(inputs)}")
        batch_sizes = set()
        for spec in self.input_specs:
            array = inputs[spec.name]
            if array.ndim != len(spec.shape) or any(
                dim >= 0 and dim != size for dim, size in zip(spec.shape, array.shape)
            ):
                raise ValueError(f"input {spec.name} must have shape {spec.shape}, got {array.shape}")
            batch_sizes.add(array.shape[0])
        if len(batch_sizes) > 1:
            raise ValueError(f"inputs disagree on the batch size: {sorted(batch_sizes)}")

    def close(self) -> None:
        """Release sessions and device memory."""
