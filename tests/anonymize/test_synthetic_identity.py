"""`method: sdn` with the bundled keyed synthetic identity model, through its real ONNX graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamd.anonymize import build_anonymizer
from streamd.anonymize.synthetic import SyntheticCodec, SyntheticIdentityAnonymizer, synthetic_template
from streamd.config import AnonymizerConfig, SdnMethodConfig
from streamd.errors import ModelError
from streamd.runtime.manifest import bundled_models_dir
from streamd.types import TrackedFace

MODEL = "sdn-synth128"
SOURCE_FILES = ("surrogate", "reveal", "identity")


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    """A copy of the bundled model's files and manifest entry (tests may rewrite its protection)."""
    bundled = bundled_models_dir()
    entry = json.loads((bundled / "manifest.json").read_text())["models"][MODEL]
    for record in entry["files"].values():
        shutil.copy(bundled / record["path"], tmp_path / record["path"])
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "models": {MODEL: entry}}))
    return tmp_path


def set_protection(models_dir: Path, spr: float | None) -> None:
    manifest = json.loads((models_dir / "manifest.json").read_text())
    if spr is None:
        manifest["models"][MODEL].pop("protection", None)
    else:
        manifest["models"][MODEL]["protection"] = {"spr": spr, "faces": 200}
    (models_dir / "manifest.json").write_text(json.dumps(manifest))


def config_for(models_dir: Path, allow: bool = False) -> AnonymizerConfig:
    return AnonymizerConfig(method="sdn", sdn=SdnMethodConfig(model=MODEL, models_dir=models_dir,
                                                              allow_unprotective_model=allow, intra_op_threads=1))


def face_frame(rng: np.random.Generator) -> tuple[np.ndarray, TrackedFace]:
    """A 240x200 frame with a face-like pattern and its landmarks where a 90 px face would have them."""
    frame = rng.integers(60, 200, (200, 240, 3), dtype=np.uint8)
    template = synthetic_template(90, 1.0, 0.5)  # landmarks of a 90 px face, crop-relative
    kps5 = template + np.array([75.0, 50.0], np.float32)
    return frame, TrackedFace(1, np.array([75, 50, 165, 140], np.float32), kps5, 0.9, True, 1)


def test_the_gate_reads_the_recorded_frame_level_protection(models_dir: Path) -> None:
    for spr, accepted in ((None, False), (0.9, False), (0.96, True)):
        set_protection(models_dir, spr)
        if accepted:
            build_anonymizer(config_for(models_dir)).close()
        else:
            with pytest.raises(ModelError, match="allow_unprotective_model"):
                build_anonymizer(config_for(models_dir))


def test_attributes_and_manipulations_are_refused(models_dir: Path) -> None:
    from streamd.errors import ConfigError

    set_protection(models_dir, 0.96)
    config = AnonymizerConfig(method="sdn", sdn=SdnMethodConfig(model=MODEL, models_dir=models_dir,
                                                                manipulations={"smiling": 1.0}))
    with pytest.raises(ConfigError, match="takes no manipulations"):
        build_anonymizer(config)


def _keys_picking_different_faces(bank_size: int) -> list[bytes]:
    """32-byte keys whose HKDF key codes pick bank entries 0, 1, 2, ... (largest of the first values)."""
    from streamd.anonymize.key_code import key_code

    chosen: dict[int, bytes] = {}
    for counter in range(10_000):
        key = counter.to_bytes(32, "big")
        chosen.setdefault(int(np.argmax(key_code(key, 128)[:bank_size])), key)
        if len(chosen) == bank_size:
            break
    return [chosen[entry] for entry in sorted(chosen)]


def test_surrogates_follow_the_track_key_and_hide_the_face(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamd.anonymize import synthetic
    from streamd.anonymize.key_code import key_code

    # Random track keys pick the same one of the 16 synthetic faces one time in 16. Each key drawn here
    # is a real HKDF key code, taken in turn from keys known to pick different faces.
    keys = iter(_keys_picking_different_faces(16))
    monkeypatch.setattr(synthetic, "code_from_track_secrets",
                        lambda secrets, track_id, dimensions: key_code(next(keys), dimensions))
    set_protection(models_dir, 0.96)
    rng = np.random.default_rng(0)
    frame, face = face_frame(rng)
    first = build_anonymizer(config_for(models_dir))
    second = build_anonymizer(config_for(models_dir))
    try:
        assert isinstance(first, SyntheticIdentityAnonymizer)
        out_a = first.apply(frame, [face])
        again = first.apply(frame, [face])
        out_b = second.apply(frame, [face])  # another anonymizer: another random track key
        assert out_a.shape == frame.shape and out_a.dtype == np.uint8
        assert np.array_equal(out_a, again)  # one track, one identity
        x0, y0, x1, y1 = first.region_of(face, (frame.shape[1], frame.shape[0]))
        outside = np.ones(frame.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(out_a[outside], frame[outside])  # nothing outside the face's region changes
        inner = (slice(80, 130), slice(100, 140))  # eyes to mouth of the face
        assert np.abs(out_a[inner].astype(int) - frame[inner]).mean() > 10
        assert np.abs(out_a[inner].astype(int) - out_b[inner]).mean() > 3
        details = first.method_details()
        assert details["key_code"]["dimensions"] == 128 and details["key_code"]["key_bits"] == 256
        first.end_track(1)
        assert not np.array_equal(first.apply(frame, [face]), out_a)  # a new track draws a new key
    finally:
        first.close()
        second.close()


def test_the_surrogate_keeps_no_face_detail_and_the_reveal_only_light(models_dir: Path) -> None:
    """Two different faces under one key give almost the same surrogate face: the identity is the key's."""
    from streamd.anonymize.key_code import key_code

    codec = SyntheticCodec.from_manifest(models_dir, MODEL, intra_op_threads=1)
    try:
        size = codec.spec.resolution
        rng = np.random.default_rng(1)
        smooth = np.full((1, size, size, 3), 128, np.uint8)
        detailed = np.clip(smooth.astype(int) + rng.integers(-60, 60, smooth.shape), 0, 255).astype(np.uint8)
        code = key_code(b"k" * 32, codec.spec.code_dimensions)[None]
        a = codec.anonymize(smooth, code).astype(int)
        b = codec.anonymize(detailed, code).astype(int)
        centre = (0, slice(40, 90), slice(40, 88))
        assert np.abs(a[centre] - b[centre]).mean() < 6  # the detail of the original is gone
        other = codec.anonymize(smooth, key_code(b"j" * 32, codec.spec.code_dimensions)[None]).astype(int)
        assert np.abs(a[centre] - other[centre]).mean() > 5  # the key decides the face
        with pytest.raises(ValueError, match="key codes"):
            codec.anonymize(smooth, np.zeros((1, 3), np.float32))
    finally:
        codec.close()


def test_context_blur_softens_around_the_oval_and_leaves_the_border():
    """With `context_sigma`, detail around the oval is blurred away; the crop's border keeps the original."""
    import torch

    from streamd.nets.synthetic_identity import SyntheticIdentity, SyntheticIdentityConfig

    def model(context_sigma: float) -> SyntheticIdentity:
        config = SyntheticIdentityConfig(resolution=64, basis_resolution=16, components=3, bank_size=4,
                                         context_sigma=context_sigma)
        generator = torch.Generator().manual_seed(0)
        return SyntheticIdentity(config, torch.full((256,), 0.5), torch.randn(3, 256, generator=generator) * 0.05,
                                 torch.ones(3), torch.randn(4, 3, generator=generator))

    generator = torch.Generator().manual_seed(1)
    crop = (torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1)
    code = torch.zeros(1, 128)
    code[0, 1] = 1.0
    plain, blurred = model(0.0), model(8.0)
    out_plain, out_blurred = plain.surrogate(crop, code), blurred.surrogate(crop, code)
    assert not hasattr(plain, "context")  # no context blur: the graph holds nothing of it
    border = blurred.context[0, 0] == 0
    assert bool(border[0].all() and border[-1].all() and border[:, 0].all())  # the crop's edge is never touched
    assert torch.allclose(out_blurred[..., border], crop[..., border], atol=1e-5)
    ring = (blurred.context[0, 0] > 0.6) & (blurred.mask[0, 0] < 0.01)
    assert bool(ring.any())

    def roughness(image: torch.Tensor) -> float:
        return float((image[..., 1:] - image[..., :-1]).abs()[..., ring[:, 1:]].mean())

    assert roughness(out_blurred) < 0.6 * roughness(out_plain)  # the original's detail there is gone
