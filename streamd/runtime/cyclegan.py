"""CycleGAN pixelation inference on aligned face crops, through any ModelRunner.

`CycleganCodec.deidentify` runs G (face -> pixelated face); `CycleganCodec.reidentify` runs F
(pixelated face -> face). There is no key: whoever holds F can re-identify, so F is the secret
(paper section 3.2 and 5.3) and is kept away from the daemon's hosts where possible.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamd.errors import ModelError
from streamd.runtime.base import ModelRunner
from streamd.runtime.manifest import ModelEntry, load_manifest
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

logger = logging.getLogger(__name__)

DEID_INPUTS = ("crop",)
DEID_OUTPUT = "pixelated"
REID_INPUTS = ("pixelated",)
REID_OUTPUT = "restored"
DEFAULT_CYCLEGAN_MODEL = "cyclegan-tiny"
MANIFEST_KIND = "cyclegan"
DEID_FILE_ROLE = "deid_onnx"
REID_FILE_ROLE = "reid_onnx"


@dataclasses.dataclass(frozen=True)
class CycleganSpec:
    """What a CycleGAN model was trained on: its crop side, and the pixelation rule of its target domain
    (blocks of min(M, N) / blocks_per_side over the face region; None when the manifest does not say)."""

    resolution: int
    blocks_per_side: int | None = None

    def check_matches(self, model_name: str, crop_size: int | None, blocks_per_side: int | None) -> None:
        """ModelError when a configured crop size or block rule differs from what the model was trained on."""
        if crop_size is not None and crop_size != self.resolution:
            raise ModelError(f"model {model_name} works on {self.resolution}x{self.resolution} crops, "
                             f"but the configuration asks for crop_size {crop_size}")
        if blocks_per_side is not None and blocks_per_side != self.blocks_per_side:
            recorded = ("records no pixelation rule" if self.blocks_per_side is None
                        else f"was trained on blocks_per_side {self.blocks_per_side}")
            raise ModelError(f"model {model_name} {recorded}, but the configuration asks for "
                             f"blocks_per_side {blocks_per_side}")


def _check_graph(runner: ModelRunner, inputs: tuple[str, ...], output: str, what: str) -> None:
    if tuple(s.name for s in runner.input_specs) != inputs or runner.output_names != (output,):
        raise ModelError(f"the CycleGAN {what} graph must map {inputs} -> {output}")


class _CycleganRunner:
    def __init__(self, runner: ModelRunner, spec: CycleganSpec, input_name: str, output_name: str) -> None:
        self.runner = runner
        self.spec = spec
        self.input_name = input_name
        self.output_name = output_name

    def __call__(self, crops_bgr: np.ndarray) -> np.ndarray:
        size = self.spec.resolution
        n = crops_bgr.shape[0] if crops_bgr.ndim == 4 else -1
        if crops_bgr.shape != (n, size, size, 3) or crops_bgr.dtype != np.uint8:
            raise ValueError(f"crops must be (N, {size}, {size}, 3) uint8 BGR, got {crops_bgr.shape} {crops_bgr.dtype}")
        if n == 0:
            return crops_bgr.copy()
        outputs = self.runner.run({self.input_name: crops_bgr_to_nchw(crops_bgr)})
        return nchw_to_crops_bgr(outputs[self.output_name])

    def close(self) -> None:
        self.runner.close()


class CycleganDeidentifier(_CycleganRunner):
    """G alone: what the daemon loads (it never needs F)."""

    def __init__(self, runner: ModelRunner, spec: CycleganSpec) -> None:
        _check_graph(runner, DEID_INPUTS, DEID_OUTPUT, "de-identification")
        super().__init__(runner, spec, DEID_INPUTS[0], DEID_OUTPUT)

    def deidentify(self, crops_bgr: np.ndarray) -> np.ndarray:
        """Aligned crops (N, S, S, 3) uint8 BGR -> crops pixelated over the face, same shape and dtype."""
        return self(crops_bgr)


class CycleganReidentifier(_CycleganRunner):
    """F alone: what restore loads."""

    def __init__(self, runner: ModelRunner, spec: CycleganSpec) -> None:
        _check_graph(runner, REID_INPUTS, REID_OUTPUT, "re-identification")
        super().__init__(runner, spec, REID_INPUTS[0], REID_OUTPUT)

    def reidentify(self, pixelated_bgr: np.ndarray) -> np.ndarray:
        """Pixelated crops (N, S, S, 3) uint8 BGR (G's output) -> restored crops, same shape and dtype."""
        return self(pixelated_bgr)


def cyclegan_entry(models_dir: str | Path | None, model_name: str) -> tuple[CycleganSpec, ModelEntry]:
    """The manifest entry of a CycleGAN model and the crop size it was trained on (ModelError if not)."""
    entry = load_manifest(models_dir).model(model_name)
    if entry.kind != MANIFEST_KIND:
        raise ModelError(f"model {model_name} is a {entry.kind!r} model, not a CycleGAN")
    pixelation = entry.metadata.get("pixelation")
    blocks = pixelation.get("blocks_per_side") if isinstance(pixelation, dict) else None
    if blocks is not None and (not isinstance(blocks, int) or blocks < 1):
        raise ModelError(f"manifest entry {model_name}: pixelation.blocks_per_side must be a positive integer")
    resolution = int(entry.require("resolution"))  # type: ignore[arg-type]
    return CycleganSpec(resolution=resolution, blocks_per_side=blocks), entry


def load_cyclegan_deidentifier(
    models_dir: str | Path | None = None,
    model_name: str = DEFAULT_CYCLEGAN_MODEL,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    intra_op_threads: int = 0,
) -> CycleganDeidentifier:
    """onnxruntime G of `model_name`, its file checked against the manifest's sha256."""
    from streamd.runtime.onnx_runner import OnnxRunner

    spec, entry = cyclegan_entry(models_dir, model_name)
    runner = OnnxRunner(entry.verified_path(DEID_FILE_ROLE), providers, intra_op_threads)
    return CycleganDeidentifier(runner, spec)


def load_cyclegan_reidentifier(
    models_dir: str | Path | None = None,
    model_name: str = DEFAULT_CYCLEGAN_MODEL,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    intra_op_threads: int = 0,
) -> CycleganReidentifier:
    """onnxruntime F of `model_name`, its file checked against the manifest's sha256."""
    from streamd.runtime.onnx_runner import OnnxRunner

    spec, entry = cyclegan_entry(models_dir, model_name)
    runner = OnnxRunner(entry.verified_path(REID_FILE_ROLE), providers, intra_op_threads)
    return CycleganReidentifier(runner, spec)
