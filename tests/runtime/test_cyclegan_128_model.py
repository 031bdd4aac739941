"""The committed 128-pixel CycleGAN model: manifest entry, ONNX graphs, parity with its torch weights on
real aligned face crops, and the daemon's protection gate."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime
import pytest

torch = pytest.importorskip("torch")

from export.sdn_data import align_face_bgr, detect_faces_centerface  # noqa: E402
from streamd import sample_faces  # noqa: E402
from streamd.errors import ModelError  # noqa: E402
from streamd.nets.cyclegan import load_cyclegan_generators  # noqa: E402
from streamd.runtime.cyclegan import load_cyclegan_deidentifier, load_cyclegan_reidentifier  # noqa: E402
from streamd.runtime.manifest import REQUIRED_SPR, bundled_models_dir, load_manifest  # noqa: E402
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr  # noqa: E402

MODEL = "cyclegan-128"


@pytest.fixture(scope="module")
def entry():
    return load_manifest(bundled_models_dir()).model(MODEL)


@pytest.fixture(scope="module")
def face_crops() -> np.ndarray:
    """Three real faces aligned at 128 px as the daemon aligns them (CenterFace landmarks)."""
    astronaut = sample_faces.astronaut_bgr()
    (kps,) = detect_faces_centerface(astronaut)
    hanks = cv2.resize(sample_faces.tom_hanks_bgr(), (128, 128), interpolation=cv2.INTER_AREA)
    crop = align_face_bgr(astronaut, kps, 128)
    return np.stack([crop, hanks, crop[:, ::-1]])


def test_manifest_records_crop_rule_files_and_protection(entry) -> None:
    assert entry.kind == "cyclegan" and entry.metadata["resolution"] == 128
    assert entry.metadata["pixelation"] == {"blocks_per_side": 6, "block_px": 14,
                                            "face_region_xyxy": [23, 16, 105, 127]}
    for role in ("deid_onnx", "reid_onnx", "torch_weights"):
        path = entry.verified_path(role)  # sha256 checked
        assert path.stat().st_size < 5_000_000
    assert isinstance(entry.measured_spr, float) and 0.0 <= entry.measured_spr <= 1.0
    assert entry.metadata["protection"]["level"] == "frame (what the daemon writes)"


def test_onnx_graphs_take_and_give_128_pixel_crops_with_a_dynamic_batch(entry) -> None:
    for role, (input_name, output_name) in (("deid_onnx", ("crop", "pixelated")),
                                            ("reid_onnx", ("pixelated", "restored"))):
        session = onnxruntime.InferenceSession(str(entry.verified_path(role)), providers=["CPUExecutionProvider"])
        (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
        assert graph_input.name == input_name and graph_output.name == output_name
        assert graph_input.shape[1:] == [3, 128, 128] and not isinstance(graph_input.shape[0], int)
        for batch in (1, 3):
            (out,) = session.run(None, {input_name: np.zeros((batch, 3, 128, 128), np.float32)})
            assert out.shape == (batch, 3, 128, 128)


def test_onnxruntime_matches_the_torch_weights_on_real_faces(entry, face_crops) -> None:
    generators = load_cyclegan_generators(entry.verified_path("torch_weights"))
    deidentifier = load_cyclegan_deidentifier(bundled_models_dir(), MODEL, intra_op_threads=1)
    reidentifier = load_cyclegan_reidentifier(bundled_models_dir(), MODEL, intra_op_threads=1)
    assert deidentifier.spec.resolution == 128 and deidentifier.spec.blocks_per_side == 6
    pixelated = deidentifier.deidentify(face_crops)
    restored = reidentifier.reidentify(pixelated)
    with torch.no_grad():
        torch_pixelated = nchw_to_crops_bgr(generators.g(torch.from_numpy(crops_bgr_to_nchw(face_crops))).numpy())
        torch_restored = nchw_to_crops_bgr(generators.f(torch.from_numpy(crops_bgr_to_nchw(pixelated))).numpy())
    assert np.abs(pixelated.astype(np.int16) - torch_pixelated).max() <= 1
    assert np.abs(restored.astype(np.int16) - torch_restored).max() <= 1
    assert not np.array_equal(pixelated, face_crops), "G changes the face"


def test_configured_crop_size_or_block_rule_must_match_the_model() -> None:
    deidentifier = load_cyclegan_deidentifier(bundled_models_dir(), MODEL, intra_op_threads=1)
    spec = deidentifier.spec
    spec.check_matches(MODEL, 128, 6)
    spec.check_matches(MODEL, None, None)
    with pytest.raises(ModelError, match="128x128 crops.*crop_size 64"):
        spec.check_matches(MODEL, 64, None)
    with pytest.raises(ModelError, match="blocks_per_side 6.*blocks_per_side 20"):
        spec.check_matches(MODEL, None, 20)
    deidentifier.close()


def test_the_gate_refuses_the_model_because_an_attacker_with_g_recovers_faces(entry) -> None:
    assert entry.measured_spr >= REQUIRED_SPR, "a plain matcher is defeated in the written frames"
    assert entry.attack_recovery is not None and entry.attack_recovery > 1.0 - REQUIRED_SPR
    with pytest.raises(ModelError, match="recorded attacks that recover"):
        entry.check_protects(allow_unprotective=False)
    entry.check_protects(allow_unprotective=True)
