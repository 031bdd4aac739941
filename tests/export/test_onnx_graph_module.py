"""CenterFace's ONNX graph run node by node in torch: same outputs as onnxruntime, and weights that
train and go back into the same graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the fine-tuning needs torch: pip install 'streamd[train]'")

from export.onnx_graph_module import OnnxGraphModule  # noqa: E402
from streamd.detect.base import create_session  # noqa: E402
from streamd.detect.centerface import CENTERFACE_SHA256, INPUT_NAME, OUTPUT_NAMES, default_centerface_path, \
    dynamic_shape_model, read_verified_model  # noqa: E402


@pytest.fixture(scope="module")
def centerface_bytes() -> bytes:
    return dynamic_shape_model(read_verified_model(default_centerface_path(), CENTERFACE_SHA256))


def _run_onnx(model_bytes: bytes, images: np.ndarray) -> list[np.ndarray]:
    return create_session(model_bytes, ["CPUExecutionProvider"], 1).run(list(OUTPUT_NAMES), {INPUT_NAME: images})


def test_torch_module_matches_onnxruntime(centerface_bytes: bytes) -> None:
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 96, 128)).astype(np.float32)
    module = OnnxGraphModule(onnx.load_from_string(centerface_bytes)).eval()
    with torch.no_grad():
        ours = [output.numpy() for output in module(torch.from_numpy(images))]
    for reference, output in zip(_run_onnx(centerface_bytes, images), ours):
        assert reference.shape == output.shape
        assert np.abs(reference - output).max() < 1e-4


def test_a_training_step_moves_the_weights_and_they_go_back_into_the_graph(centerface_bytes: bytes) -> None:
    images = np.random.default_rng(1).uniform(0, 255, (1, 3, 64, 64)).astype(np.float32)
    module = OnnxGraphModule(onnx.load_from_string(centerface_bytes))
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    heat = module(torch.from_numpy(images))[0]
    heat.mean().backward()  # push every score up
    optimizer.step()
    trained = module.to_onnx()
    assert [n.op_type for n in trained.graph.node] == [n.op_type for n in onnx.load_from_string(centerface_bytes).graph.node]
    before = _run_onnx(centerface_bytes, images)[0]
    after = _run_onnx(trained.SerializeToString(), images)[0]
    assert after.mean() > before.mean()


def test_batch_norm_statistics_stay_fixed(centerface_bytes: bytes) -> None:
    module = OnnxGraphModule(onnx.load_from_string(centerface_bytes))
    frozen = [name for op, inputs, _, _ in module.nodes if op == "BatchNormalization" for name in inputs[3:5]]
    assert frozen, "CenterFace has batch norms"
    assert not any(module.params[module.param_keys[name]].requires_grad for name in frozen)


def test_an_unsupported_operator_is_refused() -> None:
    node = onnx.helper.make_node("Tanh", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="Tanh"):
        OnnxGraphModule(onnx.helper.make_model(graph))
