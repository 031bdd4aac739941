"""CenterFace's ONNX graph as a trainable torch module, and its weights written back into the graph.

CenterFace ships only as ONNX. Its graph uses six operators (Conv, ConvTranspose, BatchNormalization,
Relu, Add, Sigmoid), so running it node by node in torch gives the same outputs (parity is checked by
tests/export/test_onnx_graph_module.py) with every float initializer a parameter. After training,
`to_onnx` copies the parameters into the original graph: same nodes, names, inputs and outputs, so the
detector loads the result exactly like the original file.
"""

from __future__ import annotations

import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

SUPPORTED_OPS = ("Conv", "ConvTranspose", "BatchNormalization", "Relu", "Add", "Sigmoid")


class OnnxGraphModule(torch.nn.Module):
    """Runs an ONNX graph of SUPPORTED_OPS in torch; float initializers are trainable parameters
    (batch-norm running statistics stay fixed)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        self.model = model
        self.param_keys: dict[str, str] = {}
        self.params = torch.nn.ParameterDict()
        for initializer in model.graph.initializer:
            key = f"p{len(self.param_keys)}"
            self.param_keys[initializer.name] = key
            array = numpy_helper.to_array(initializer).copy()
            self.params[key] = torch.nn.Parameter(torch.from_numpy(array), requires_grad=array.dtype.kind == "f")
        self.nodes = [
            (node.op_type, list(node.input), list(node.output),
             {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute})
            for node in model.graph.node
        ]
        unsupported = sorted({op for op, *_ in self.nodes if op not in SUPPORTED_OPS})
        if unsupported:
            raise ValueError(f"graph uses operators this module does not run: {', '.join(unsupported)}")
        for op, inputs, _, _ in self.nodes:
            if op == "BatchNormalization":
                for statistic in inputs[3:5]:
                    self.params[self.param_keys[statistic]].requires_grad_(False)
        self.input_name = model.graph.input[0].name
        self.output_names = [output.name for output in model.graph.output]

    def _value(self, values: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name in values:
            return values[name]
        return self.params[self.param_keys[name]]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Outputs in the graph's output order for NCHW float images (CenterFace: RGB 0..255)."""
        values = {self.input_name: images}
        for op, inputs, outputs, attributes in self.nodes:
            args = [self._value(values, name) for name in inputs if name]
            values[outputs[0]] = _run_node(op, args, attributes)
        return [values[name] for name in self.output_names]

    def to_onnx(self) -> onnx.ModelProto:
        """The original graph with this module's current weights."""
        trained = onnx.ModelProto()
        trained.CopyFrom(self.model)
        for initializer in trained.graph.initializer:
            dtype = numpy_helper.to_array(initializer).dtype
            array = self.params[self.param_keys[initializer.name]].detach().cpu().numpy().astype(dtype)
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
        return trained


def _symmetric_pads(attributes: dict) -> tuple[int, int]:
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    if (top, left) != (bottom, right):
        raise ValueError(f"asymmetric padding {attributes['pads']} is not supported")
    return top, left


def _run_node(op: str, args: list[torch.Tensor], attributes: dict) -> torch.Tensor:
    if op == "Conv":
        return F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None,
                        stride=attributes.get("strides", [1, 1]), padding=_symmetric_pads(attributes),
                        dilation=attributes.get("dilations", [1, 1]), groups=attributes.get("group", 1))
    if op == "ConvTranspose":
        return F.conv_transpose2d(args[0], args[1], args[2] if len(args) > 2 else None,
                                  stride=attributes.get("strides", [1, 1]), padding=_symmetric_pads(attributes),
                                  output_padding=attributes.get("output_padding", [0, 0]),
                                  groups=attributes.get("group", 1), dilation=attributes.get("dilations", [1, 1]))
    if op == "BatchNormalization":
        return F.batch_norm(args[0], args[3], args[4], args[1], args[2], training=False,
                            eps=attributes.get("epsilon", 1e-5))
    if op == "Relu":
        return F.relu(args[0])
    if op == "Add":
        return args[0] + args[1]
    return torch.sigmoid(args[0])
