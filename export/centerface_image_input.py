"""Give a quantized CenterFace an 8-bit image input: uint8 NHWC BGR pixels instead of float NCHW RGB.

    python -m export.centerface_image_input --model centerface-robust-int8 [--models-dir models]

A statically quantized CenterFace starts by quantizing its float input back to 8 bits. Calibrated on
pixels 0..255, that first QuantizeLinear has scale 1 and zero point 0: it maps every whole pixel value to
itself. The detector nonetheless paid for turning its uint8 BGR image into a float32 RGB blob
(cv2.dnn.blobFromImage, about 2 ms a 640x384 input on this machine's cores) and the network for turning it
back. The rewrite

- replaces that QuantizeLinear with a Transpose of a new uint8 input `image` (batch, height, width, 3),
  which onnxruntime cancels against the NHWC layout its integer convolutions use anyway;
- takes the BGR-to-RGB swap into the first convolution, by reversing the input-channel axis of its
  int8 weights (per output channel, so every scale stays as it was).

For every whole-valued input the outputs are bit-identical to those of the float-input graph: the
rewrite refuses a graph where that would not hold (an input scale other than 1 or zero point other than
0, an input read by more than one convolution), and the command checks the outputs on demo frames
before it writes the file and its manifest entry. Applied by export/quantize_centerface.py to the model
it keeps; this command rewrites a model quantized before that step existed.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from streamd.detect.base import create_session
from streamd.detect.centerface import IMAGE_INPUT_NAME, IMAGE_TENSOR_LAYOUT, INPUT_NAME, OUTPUT_NAMES, \
    image_from_blob
from streamd.errors import ModelError
from streamd.runtime.manifest import MANIFEST_NAME, manifest_file_entry, write_manifest_entry

logger = logging.getLogger(__name__)


def _initializer_value(graph, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for initializer in graph.initializer:
        if initializer.name == name:
            return numpy_helper.to_array(initializer)
    raise ModelError(f"CenterFace graph: {name} is not a constant")


def _only_consumer(graph, tensor: str, op_type: str):
    consumers = [node for node in graph.node if tensor in node.input]
    if len(consumers) != 1 or consumers[0].op_type != op_type:
        found = ", ".join(node.op_type for node in consumers) or "nothing"
        raise ModelError(f"CenterFace graph: {tensor} feeds {found}, expected one {op_type}")
    return consumers[0]


def image_input_model(model_bytes: bytes) -> bytes:
    """The quantized (QDQ) CenterFace with its float input `input.1` replaced by the uint8 NHWC BGR input
    `image`; ModelError when the graph is not one where that changes no output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    if [graph_input.name for graph_input in graph.input] != [INPUT_NAME]:
        raise ModelError(f"CenterFace graph has inputs {[i.name for i in graph.input]}, expected [{INPUT_NAME!r}]")
    quantize = _only_consumer(graph, INPUT_NAME, "QuantizeLinear")
    scale = _initializer_value(graph, quantize.input[1])
    zero_point = _initializer_value(graph, quantize.input[2])
    if scale.size != 1 or float(scale) != 1.0 or zero_point.size != 1 or int(zero_point) != 0 \
            or zero_point.dtype != np.uint8:
        raise ModelError(f"CenterFace input is quantized with scale {scale} and zero point {zero_point}: "
                         "only scale 1 and uint8 zero point 0 keep whole pixel values exact")
    dequantize = _only_consumer(graph, quantize.output[0], "DequantizeLinear")
    first_conv = _only_consumer(graph, dequantize.output[0], "Conv")
    weight_dequantize = next((node for node in graph.node if node.output[0] == first_conv.input[1]), None)
    if weight_dequantize is None or weight_dequantize.op_type != "DequantizeLinear":
        raise ModelError("CenterFace graph: the first convolution's weights are not a dequantized constant")
    _only_consumer(graph, weight_dequantize.output[0], "Conv")
    axis = next((attribute.i for attribute in weight_dequantize.attribute if attribute.name == "axis"), 1)
    if axis != 0 and _initializer_value(graph, weight_dequantize.input[1]).size != 1:
        raise ModelError("CenterFace graph: the first convolution's weights are quantized per input channel")
    weights_name = weight_dequantize.input[0]
    weights = _initializer_value(graph, weights_name)
    if weights.ndim != 4 or weights.shape[1] != 3:
        raise ModelError(f"CenterFace graph: first convolution weights of shape {weights.shape}, expected (C, 3, k, k)")
    for initializer in graph.initializer:
        if initializer.name == weights_name:
            initializer.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weights[:, ::-1]), weights_name))
    position = list(graph.node).index(quantize)
    graph.node.remove(quantize)
    graph.node.insert(position, helper.make_node("Transpose", [IMAGE_INPUT_NAME], [quantize.output[0]],
                                                 perm=[0, 3, 1, 2], name="image_nhwc_to_nchw"))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(IMAGE_INPUT_NAME, TensorProto.UINT8,
                                                     ["batch", "height", "width", 3]))
    unused = {quantize.input[1], quantize.input[2]} - {name for node in graph.node for name in node.input}
    kept = [initializer for initializer in graph.initializer if initializer.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def largest_output_difference(float_model: bytes, image_model: bytes, blobs: list[np.ndarray]) -> float:
    """The largest absolute difference between the two graphs' outputs over `blobs` (float NCHW RGB
    network inputs, whole-valued); 0.0 when the rewrite is exact."""
    float_session = create_session(float_model, ["CPUExecutionProvider"], 1)
    image_session = create_session(image_model, ["CPUExecutionProvider"], 1)
    largest = 0.0
    for blob in blobs:
        expected = float_session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
        actual = image_session.run(list(OUTPUT_NAMES), {IMAGE_INPUT_NAME: image_from_blob(blob)})
        largest = max([largest] + [float(np.abs(a - e).max()) for a, e in zip(actual, expected)])
    return largest


def check_exact(float_model: bytes, image_model: bytes, blobs: list[np.ndarray]) -> None:
    """ModelError unless the image-input graph gives the float graph's outputs bit for bit."""
    difference = largest_output_difference(float_model, image_model, blobs)
    if difference != 0.0:
        raise ModelError(f"the image-input graph differs from the float-input graph by up to {difference}")


def main(argv: list[str] | None = None) -> int:
    from export.centerface_frames import demo_frames, held_out_indices, DetectorFrame, FRAME_LIMIT_WH
    from export.centerface_quantization import network_inputs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="manifest name of a quantized CenterFace")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest = json.loads((args.models_dir / MANIFEST_NAME).read_text())
    entry = manifest["models"].get(args.model)
    if entry is None or "quantization" not in entry:
        raise SystemExit(f"{args.models_dir / MANIFEST_NAME}: no quantized CenterFace named {args.model!r}")
    model_file = entry["files"]["onnx"]["path"]
    float_model = (args.models_dir / model_file).read_bytes()
    image_model = image_input_model(float_model)
    blobs = network_inputs([DetectorFrame(f"demo {index}", frame, FRAME_LIMIT_WH)
                            for index, frame in demo_frames(held_out_indices()[:4])])
    check_exact(float_model, image_model, blobs)
    (args.models_dir / model_file).write_bytes(image_model)
    entry["files"]["onnx"] = manifest_file_entry(args.models_dir, model_file)
    entry["tensor_layout"] = IMAGE_TENSOR_LAYOUT
    write_manifest_entry(args.models_dir, args.model, entry)
    print(f"{args.models_dir / model_file}: input {IMAGE_INPUT_NAME} ({IMAGE_TENSOR_LAYOUT}), outputs identical "
          f"to the float-input graph on {len(blobs)} demo frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
