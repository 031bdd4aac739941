"""Model runners, the models manifest and the committed default SDN model through onnxruntime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.errors import ModelError
from streamd.runtime.manifest import default_models_dir, load_manifest
from streamd.runtime.onnx_runner import OnnxRunner
from streamd.runtime.sdn import DEFAULT_SDN_MODEL, SdnCodec, load_sdn_crop_runner
from streamd.sample_faces import tom_hanks_bgr

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def codec() -> SdnCodec:
    return SdnCodec.from_manifest(MODELS_DIR, DEFAULT_SDN_MODEL)


def _face(size: int) -> np.ndarray:
    return cv2.resize(tom_hanks_bgr(), (size, size), interpolation=cv2.INTER_AREA)


def _bits(codec: SdnCodec, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (n, codec.spec.password_bits)).astype(np.float32)


def test_default_models_dir_is_the_checkout_models_folder(monkeypatch):
    monkeypatch.delenv("STREAMD_MODELS_DIR", raising=False)
    assert default_models_dir() == MODELS_DIR
    monkeypatch.setenv("STREAMD_MODELS_DIR", "/somewhere/else")
    assert default_models_dir() == Path("/somewhere/else")


def test_committed_model_gives_batched_surrogates_of_the_right_shape(codec):
    size = codec.spec.resolution
    assert codec.spec.password_bits >= 32
    crops = np.stack([_face(size), _face(size)[:, ::-1]])
    attributes = np.zeros((2, len(codec.spec.attribute_names)), np.float32)
    surrogates = codec.anonymize(crops, _bits(codec, 2, 0), attributes)
    assert surrogates.shape == crops.shape and surrogates.dtype == np.uint8
    restored = codec.restore(surrogates, _bits(codec, 2, 0), attributes)
    assert restored.shape == crops.shape and restored.dtype == np.uint8
    empty = np.zeros((0, size, size, 3), np.uint8)
    assert codec.anonymize(empty, np.zeros((0, codec.spec.password_bits), np.float32),
                           np.zeros((0, len(codec.spec.attribute_names)), np.float32)).shape == empty.shape


def test_different_passwords_give_different_surrogates(codec):
    size = codec.spec.resolution
    crops = np.stack([_face(size)] * 2)
    attributes = np.zeros((2, len(codec.spec.attribute_names)), np.float32)
    bits = _bits(codec, 2, 1)
    bits[1] = 1 - bits[0]
    surrogates = codec.anonymize(crops, bits, attributes).astype(np.float32)
    assert np.mean(np.abs(surrogates[0] - surrogates[1])) > 2.0
    assert np.mean(np.abs(surrogates[0] - crops[0].astype(np.float32))) > 2.0


def test_restore_with_the_right_password_is_closer_than_with_a_wrong_one(codec):
    size = codec.spec.resolution
    crop = _face(size)[None]
    attributes = np.zeros((1, len(codec.spec.attribute_names)), np.float32)
    bits = _bits(codec, 1, 2)
    wrong = bits.copy()
    wrong[0, :8] = 1 - wrong[0, :8]
    surrogate = codec.anonymize(crop, bits, attributes)
    error_right = np.mean(np.abs(codec.restore(surrogate, bits, attributes).astype(np.float32) - crop))
    error_wrong = np.mean(np.abs(codec.restore(surrogate, wrong, attributes).astype(np.float32) - crop))
    assert error_right < error_wrong


def test_codec_refuses_bad_inputs(codec):
    size = codec.spec.resolution
    attributes = np.zeros((1, len(codec.spec.attribute_names)), np.float32)
    with pytest.raises(ValueError, match="crops"):
        codec.anonymize(np.zeros((1, size + 1, size, 3), np.uint8), _bits(codec, 1, 0), attributes)
    with pytest.raises(ValueError, match="password_bits"):
        codec.anonymize(np.zeros((1, size, size, 3), np.uint8), np.full((1, codec.spec.password_bits), 2.0), attributes)
    with pytest.raises(ValueError, match="attributes"):
        codec.attribute_vector({"Nonexistent": 1.0})


def test_crop_runner_for_the_evaluation_harness():
    runner = load_sdn_crop_runner(MODELS_DIR)
    crop = _face(runner.crop_size)
    bits = np.ones(runner.password_bits, np.float32)
    surrogate = runner.anonymize(crop, bits)
    assert surrogate.shape == crop.shape
    assert runner.reveal(surrogate, bits).shape == crop.shape
    assert len(runner.model_sha256) == 64


def _copy_models(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(MODELS_DIR, target)
    return target


def test_mismatched_model_file_is_a_model_error(tmp_path):
    models = _copy_models(tmp_path)
    entry = json.loads((models / "manifest.json").read_text())["models"][DEFAULT_SDN_MODEL]
    encoder = models / entry["files"]["encoder_onnx"]["path"]
    data = bytearray(encoder.read_bytes())
    data[-1] ^= 0xFF
    encoder.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        SdnCodec.from_manifest(models, DEFAULT_SDN_MODEL)


def test_missing_model_file_or_manifest_is_a_model_error(tmp_path):
    models = _copy_models(tmp_path)
    entry = json.loads((models / "manifest.json").read_text())["models"][DEFAULT_SDN_MODEL]
    (models / entry["files"]["decoder_onnx"]["path"]).unlink()
    with pytest.raises(ModelError, match="missing"):
        SdnCodec.from_manifest(models, DEFAULT_SDN_MODEL)
    with pytest.raises(ModelError, match="not in"):
        load_manifest(models).model("no-such-model")
    (models / "manifest.json").unlink()
    with pytest.raises(ModelError, match="does not exist"):
        load_manifest(models)


def test_onnx_runner_refuses_unavailable_providers_and_missing_files(tmp_path):
    entry = load_manifest(MODELS_DIR).model(DEFAULT_SDN_MODEL)
    with pytest.raises(ModelError, match="not available"):
        OnnxRunner(entry.verified_path("encoder_onnx"), providers=["NoSuchExecutionProvider"])
    with pytest.raises(ModelError, match="does not exist"):
        OnnxRunner(tmp_path / "absent.onnx")


def test_onnx_runner_checks_input_names_and_shapes():
    runner = OnnxRunner(load_manifest(MODELS_DIR).model(DEFAULT_SDN_MODEL).verified_path("encoder_onnx"))
    example = {spec.name: spec.example(2) for spec in runner.input_specs}
    assert runner.run(example)["surrogate"].shape[0] == 2
    with pytest.raises(ValueError, match="exactly"):
        runner.run({"crop": example["crop"]})
    bad = dict(example, password_bits=example["password_bits"][:, :4])
    with pytest.raises(ValueError, match="password_bits"):
        runner.run(bad)


def test_torch_runner_matches_onnxruntime_on_the_committed_weights():
    torch = pytest.importorskip("torch")
    from streamd.nets.sdn import load_generators
    from streamd.runtime.base import TensorSpec
    from streamd.runtime.torch_runner import TorchRunner

    entry = load_manifest(MODELS_DIR).model(DEFAULT_SDN_MODEL)
    generators = load_generators(entry.verified_path("torch_weights"))
    onnx_runner = OnnxRunner(entry.verified_path("encoder_onnx"))

    class Encode(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generators = generators

        def forward(self, crop, password_bits, attributes, latent_shift):
            return self.generators.anonymize(crop, password_bits, attributes, latent_shift)

    specs = [TensorSpec(s.name, s.dtype, s.shape) for s in onnx_runner.input_specs]
    torch_runner = TorchRunner(Encode(), specs, ["surrogate"])
    rng = np.random.default_rng(0)
    inputs = {spec.name: rng.random(spec.example(3).shape).astype(np.float32) for spec in specs}
    difference = np.abs(torch_runner.run(inputs)["surrogate"] - onnx_runner.run(inputs)["surrogate"])
    assert float(difference.max()) <= 1e-4


def test_tensorrt_runner_says_how_to_get_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    from streamd.runtime.tensorrt_runner import TensorRTRunner

    with pytest.raises(ModelError, match="tensorrt"):
        TensorRTRunner(tmp_path / "model.engine")


def test_neural_restore_inverts_the_encoder_only_with_the_right_password(codec):
    """Measured on the committed model: decoder alone 23.1 dB, with inversion 26.3 dB, a wrong password
    about 8 dB (first 8 held-out faces, JPEG 90)."""
    from export.measure_sdn import jpeg_round_trip_bgr, psnr
    from export.sdn_data import build_offline_faces
    from streamd.runtime.sdn_inversion import restore_by_inversion

    _, held_out = build_offline_faces(codec.spec.resolution, len(codec.spec.attribute_names))
    crops = np.stack([record.bgr for record in held_out[:8]])
    attributes = np.zeros((len(crops), len(codec.spec.attribute_names)), np.float32)
    right, wrong = _bits(codec, len(crops), 3), _bits(codec, len(crops), 4)
    stored = np.stack([jpeg_round_trip_bgr(surrogate, 90) for surrogate in codec.anonymize(crops, right, attributes)])

    def mean_psnr(restored: np.ndarray) -> float:
        return float(np.mean([psnr(crop, face) for crop, face in zip(crops, restored)]))

    decoder_only = mean_psnr(codec.restore(stored, right, attributes))
    inverted = mean_psnr(restore_by_inversion(codec, stored, right, attributes, None))
    inverted_wrong = mean_psnr(restore_by_inversion(codec, stored, wrong, attributes, None))
    assert inverted > decoder_only + 1.5 and inverted > 24, (decoder_only, inverted)
    assert inverted_wrong < inverted - 10, (inverted, inverted_wrong)


def test_record_protection_changes_only_the_protection_of_one_entry(tmp_path):
    from streamd.runtime.manifest import record_protection

    folder = _copy_models(tmp_path)
    before = json.loads((folder / "manifest.json").read_text())
    record_protection(folder, DEFAULT_SDN_MODEL, {"spr": 0.96, "faces": 50})
    after = json.loads((folder / "manifest.json").read_text())
    assert after["models"][DEFAULT_SDN_MODEL]["protection"] == {"spr": 0.96, "faces": 50}
    after["models"][DEFAULT_SDN_MODEL]["protection"] = before["models"][DEFAULT_SDN_MODEL]["protection"]
    assert after == before
    # The new rate passes, but the model's recorded attacks (its password is recovered) still refuse it.
    with pytest.raises(ModelError, match="recorded attacks that recover"):
        load_manifest(folder).model(DEFAULT_SDN_MODEL).check_protects(allow_unprotective=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["models"][DEFAULT_SDN_MODEL]["attacks"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    load_manifest(folder).model(DEFAULT_SDN_MODEL).check_protects(allow_unprotective=False)
    with pytest.raises(ModelError, match="no model 'nope'"):
        record_protection(folder, "nope", {"spr": 1.0})
