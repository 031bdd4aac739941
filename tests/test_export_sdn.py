"""ONNX export of the SDN graphs: parity with torch, names, dynamic batch, manifest; TensorRT guard."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # export/ is a script folder, not part of the installed package

from export import build_trt, export_onnx  # noqa: E402
from streamd.nets.sdn import SdnGenerators, save_generators, sdn_config  # noqa: E402
from streamd.runtime.manifest import file_sha256, load_manifest  # noqa: E402
from streamd.runtime.onnx_runner import OnnxRunner  # noqa: E402
from streamd.runtime.sdn import SdnCodec  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    generators = SdnGenerators(sdn_config("tiny", width=8, num_residual_blocks=1, identity_hidden=32)).eval()
    out_dir = tmp_path_factory.mktemp("models")
    result = export_onnx.export_sdn(generators, out_dir, "sdn-test")
    save_generators(generators, out_dir / "sdn-test.pt")
    export_onnx.update_manifest(out_dir, "sdn-test", generators, {})
    return generators, out_dir, result


def test_exported_graphs_match_torch(exported):
    _, _, result = exported
    assert result["encoder_max_abs_diff"] <= 1e-4
    assert result["decoder_max_abs_diff"] <= 1e-4


def test_graphs_have_named_inputs_and_a_dynamic_batch(exported):
    generators, _, result = exported
    encoder = OnnxRunner(result["encoder_onnx"])
    decoder = OnnxRunner(result["decoder_onnx"])
    assert [s.name for s in encoder.input_specs] == ["crop", "password_bits", "attributes", "latent_shift"]
    assert encoder.output_names == ("surrogate",)
    assert [s.name for s in decoder.input_specs] == ["surrogate", "password_bits", "attributes"]
    assert decoder.output_names == ("restored",)
    assert all(spec.shape[0] == -1 for spec in encoder.input_specs)
    image, bits, attributes, shift = export_onnx.encoder_example_inputs(generators, 5, seed=3)
    outputs = encoder.run({"crop": image.numpy(), "password_bits": bits.numpy(), "attributes": attributes.numpy(),
                           "latent_shift": shift.numpy()})
    with torch.no_grad():
        expected = generators.anonymize(image, bits, attributes, shift).numpy()
    assert outputs["surrogate"].shape == (5, 3, 64, 64)
    assert np.max(np.abs(outputs["surrogate"] - expected)) <= 1e-4


def test_manifest_records_hashes_and_hyperparameters(exported):
    generators, out_dir, _ = exported
    data = json.loads((out_dir / "manifest.json").read_text())
    entry = data["models"]["sdn-test"]
    assert entry["resolution"] == 64 and entry["password_bits"] == 32
    assert entry["attribute_names"] == list(generators.config.attribute_names)
    for role in ("encoder_onnx", "decoder_onnx", "torch_weights"):
        record = entry["files"][role]
        assert record["sha256"] == file_sha256(out_dir / record["path"])
        assert record["bytes"] == (out_dir / record["path"]).stat().st_size
    assert load_manifest(out_dir).model("sdn-test").verified_path("encoder_onnx").is_file()
    codec = SdnCodec.from_manifest(out_dir, "sdn-test")
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    bits = np.zeros((2, 32), np.float32)
    attributes = np.zeros((2, len(generators.config.attribute_names)), np.float32)
    assert codec.restore(codec.anonymize(crops, bits, attributes), bits, attributes).shape == crops.shape


def test_trt_cache_key_names_gpu_version_and_model():
    key = build_trt.engine_cache_key("NVIDIA H100 80GB HBM3", "10.3.0", "ab" * 32, 4, 16)
    assert key.startswith("nvidia-h100-80gb-hbm3_trt10.3.0_abababababab_b1-4-16_")
    assert key != build_trt.engine_cache_key("NVIDIA H100 80GB HBM3", "10.4.0", "ab" * 32, 4, 16)
    assert key != build_trt.engine_cache_key("NVIDIA L4", "10.3.0", "ab" * 32, 4, 16)
    assert key != build_trt.engine_cache_key("NVIDIA H100 80GB HBM3", "10.3.0", "cd" * 32, 4, 16)


def test_build_trt_says_clearly_when_tensorrt_is_missing(exported, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    _, _, result = exported
    assert build_trt.main(["--onnx", str(result["encoder_onnx"]), "--cache-dir", str(tmp_path)]) == 2
    assert "tensorrt" in capsys.readouterr().err.lower()
