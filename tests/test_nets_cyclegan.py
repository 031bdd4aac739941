"""CycleGAN pixelation: networks, losses, pixelation of the face region, training steps, ONNX export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # export/ is a script folder, not part of the installed package

from export.export_cyclegan import export_cyclegan, update_cyclegan_manifest  # noqa: E402
from export.train_cyclegan import CycleGanTrainer, PixelationDomainsDataset, evaluate_held_out  # noqa: E402
from export.sdn_data import NO_AUGMENT, FaceRecord  # noqa: E402
from streamd.anonymize.pixelate import (  # noqa: E402
    canonical_face_box,
    pixel_block_size,
    pixelate_face_crop,
    pixelate_region,
)
from streamd.errors import ModelError  # noqa: E402
from streamd.nets.cyclegan import (  # noqa: E402
    CycleGan,
    CycleGanConfig,
    CycleGanGenerators,
    build_cyclegan,
    cycle_consistency_loss,
    cyclegan_config,
    load_cyclegan_generators,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    save_cyclegan_generators,
    wgan_gp_discriminator_loss,
)
from streamd.runtime.cyclegan import load_cyclegan_deidentifier, load_cyclegan_reidentifier  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Training steps on a loaded 2-core machine are orders of magnitude slower with competing threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_config(**overrides) -> CycleGanConfig:
    values = dict(resolution=32, generator_width=8, num_residual_blocks=1, discriminator_width=8)
    values.update(overrides)
    return cyclegan_config("tiny", **values)


@pytest.mark.parametrize("size", ["tiny", pytest.param("paper", marks=pytest.mark.slow)])
def test_generators_keep_the_shape_and_discriminators_give_patches(size):
    network = build_cyclegan(size).eval()
    config = network.config
    image = torch.rand(2, 3, config.resolution, config.resolution) * 2 - 1
    with torch.no_grad():
        pixelated = network.generators.deidentify(image)
        restored = network.generators.reidentify(pixelated)
        patches = network.discriminator_y(pixelated)
    assert pixelated.shape == restored.shape == image.shape
    assert float(pixelated.abs().max()) <= 1.0 and float(restored.abs().max()) <= 1.0
    assert patches.shape[:2] == (2, 1) and patches.shape[2] == patches.shape[3] > 1


def test_paper_size_has_nine_residual_blocks_and_a_70_pixel_patch_discriminator():
    config = cyclegan_config("paper")
    assert config.num_residual_blocks == 9
    network = CycleGan(config)
    blocks = [m for m in network.g.model if type(m).__name__ == "ResnetBlock"]
    assert len(blocks) == 9
    convolutions = [m for m in network.discriminator_x.model if isinstance(m, torch.nn.Conv2d)]
    receptive = 1
    for conv in reversed(convolutions):
        receptive = (receptive - 1) * conv.stride[0] + conv.kernel_size[0]
    assert receptive == 70


def test_attacker_variant_has_fewer_blocks_and_config_round_trips(tmp_path):
    config = cyclegan_config("tiny", num_residual_blocks=2)
    assert CycleGanConfig.from_dict(config.to_dict()) == config
    generators = CycleGanGenerators(config)
    save_cyclegan_generators(generators, tmp_path / "g.pt")
    loaded = load_cyclegan_generators(tmp_path / "g.pt")
    assert loaded.config == config
    with pytest.raises(ValueError, match="unknown CycleGAN size"):
        cyclegan_config("huge")


def test_losses_follow_equations_two_to_four():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert float(lsgan_discriminator_loss(ones, zeros)) == 0.0
    assert float(lsgan_discriminator_loss(zeros, ones)) == pytest.approx(1.0)
    assert float(lsgan_generator_loss(ones)) == 0.0 and float(lsgan_generator_loss(zeros)) == 1.0
    x = torch.zeros(1, 3, 8, 8)
    assert float(cycle_consistency_loss(x, x + 0.5, x, x - 0.25)) == pytest.approx(0.75)
    critic = torch.nn.Conv2d(3, 1, 3)
    value = wgan_gp_discriminator_loss(critic, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    assert value.requires_grad and torch.isfinite(value)


def test_pixel_block_size_is_a_twentieth_of_the_shorter_side():
    assert pixel_block_size((200, 100)) == 5
    assert pixel_block_size((60, 100)) == 3
    assert pixel_block_size((10, 10)) == 1
    with pytest.raises(ValueError):
        pixel_block_size((0, 10))


def test_pixelation_makes_blocks_inside_the_region_only():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
    box = (20, 10, 100, 70)  # 80 x 60: blocks of 3
    out = pixelate_region(image, box)
    x0, y0, x1, y1 = box
    outside = np.ones(image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], image[outside])
    block = out[y0:y0 + 3, x0:x0 + 3].reshape(-1, 3)
    assert (block == block[0]).all()
    assert np.allclose(block[0], image[y0:y0 + 3, x0:x0 + 3].reshape(-1, 3).mean(0), atol=0.5)
    assert not np.array_equal(out[y0:y1, x0:x1], image[y0:y1, x0:x1])


def test_face_crop_pixelation_covers_the_canonical_face():
    x0, y0, x1, y1 = canonical_face_box(64)
    assert 0 <= x0 < 22 and 42 < x1 <= 64 and 0 <= y0 < 29 and 53 < y1 <= 64  # around eyes and mouth
    crop = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = pixelate_face_crop(crop)
    assert np.array_equal(out[:, :x0], crop[:, :x0])
    assert not np.array_equal(out[y0:y1, x0:x1], crop[y0:y1, x0:x1])


def test_domains_dataset_gives_a_face_and_a_pixelated_face():
    crop = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    record = FaceRecord(bgr=crop, identity=0, attributes=np.zeros(1, np.float32),
                        attribute_mask=np.zeros(1, np.float32), source="noise")
    sample = PixelationDomainsDataset([record], NO_AUGMENT, length=2, seed=0)[0]
    assert sample["x"].shape == sample["y"].shape == (3, 32, 32)
    pixelated = pixelate_face_crop(crop)
    expected = torch.from_numpy(pixelated[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0)
    assert torch.allclose(sample["y"], expected)


def test_a_few_training_steps_reduce_the_cycle_loss():
    torch.manual_seed(0)
    network = CycleGan(small_config(global_skip=False))
    trainer = CycleGanTrainer(network, torch.device("cpu"), learning_rate=2e-3, cycle_weight=10.0,
                              adversarial="lsgan", channel=None, pool_size=4, seed=0)
    generator = torch.Generator().manual_seed(0)
    batch = {"x": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1,
             "y": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1}
    losses = [trainer.step(batch)["cycle"] for _ in range(25)]
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:3]), losses
    wgan = CycleGanTrainer(CycleGan(small_config()), torch.device("cpu"), 1e-4, 10.0, "wgan-gp", None, 0, 0)
    assert np.isfinite(list(wgan.step(batch).values())).all()


def test_checkpoint_state_round_trips():
    network = CycleGan(small_config())
    trainer = CycleGanTrainer(network, torch.device("cpu"), 2e-4, 10.0, "lsgan", None, 2, 0)
    batch = {"x": torch.zeros(1, 3, 32, 32), "y": torch.zeros(1, 3, 32, 32)}
    trainer.step(batch)
    other = CycleGanTrainer(CycleGan(small_config()), torch.device("cpu"), 2e-4, 10.0, "lsgan", None, 2, 0)
    other.load_state_dict(trainer.state_dict())
    assert other.iteration == 1
    for a, b in zip(trainer.network.parameters(), other.network.parameters()):
        assert torch.equal(a, b)


def test_held_out_evaluation_reports_psnr():
    faces = [np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    metrics = evaluate_held_out(CycleGan(small_config()), faces, jpeg_quality=90)
    assert set(metrics) == {"psnr_reid", "psnr_deid", "psnr_deid_vs_pixelated"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cyclegan-models")
    torch.manual_seed(5)
    generators = CycleGanGenerators(small_config()).eval()
    save_cyclegan_generators(generators, folder / "cg.pt")
    result = export_cyclegan(generators, folder, "cg")
    update_cyclegan_manifest(folder, "cg", generators, {"model_card": "cg.md"})
    return folder, generators, result


def test_exported_graphs_match_torch_and_have_a_dynamic_batch(exported):
    folder, generators, result = exported
    assert result["deid_max_abs_diff"] < 1e-4 and result["reid_max_abs_diff"] < 1e-4
    deidentifier = load_cyclegan_deidentifier(folder, "cg")
    reidentifier = load_cyclegan_reidentifier(folder, "cg")
    crops = np.random.default_rng(4).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    pixelated = deidentifier.deidentify(crops)
    assert pixelated.shape == crops.shape and pixelated.dtype == np.uint8
    rgb = torch.from_numpy(crops[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0)
    with torch.no_grad():
        expected = ((generators.g(rgb).numpy().transpose(0, 2, 3, 1)[..., ::-1] + 1.0) * 127.5).round()
    assert np.abs(pixelated.astype(np.float32) - expected).max() <= 1.0
    assert reidentifier.reidentify(pixelated[:1]).shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="crops must be"):
        deidentifier.deidentify(crops[:, :16])


def test_manifest_entry_and_mismatch_is_a_model_error(exported, tmp_path):
    folder, _, _ = exported
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["models"]["cg"]
    assert entry["kind"] == "cyclegan" and entry["resolution"] == 32 and entry["model_card"] == "cg.md"
    assert set(entry["files"]) == {"deid_onnx", "reid_onnx", "torch_weights"}
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    reid = copy / "cg-reid.onnx"
    reid.write_bytes(reid.read_bytes()[:-10] + b"0123456789")
    load_cyclegan_deidentifier(copy, "cg")
    with pytest.raises(ModelError, match="sha256"):
        load_cyclegan_reidentifier(copy, "cg")
    with pytest.raises(ModelError, match="not in"):
        load_cyclegan_deidentifier(copy, "missing")


def test_update_keeps_other_manifest_entries(tmp_path):
    generators = CycleGanGenerators(small_config()).eval()
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "models": {"other": {"kind": "sdn"}}}))
    save_cyclegan_generators(generators, tmp_path / "cg.pt")
    export_cyclegan(generators, tmp_path, "cg")
    update_cyclegan_manifest(tmp_path, "cg", generators, {})
    models = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert set(models) == {"other", "cg"} and models["other"] == {"kind": "sdn"}


def test_a_non_cyclegan_entry_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "models": {
        "cg": {"kind": "sdn", "resolution": 32, "files": {}}}}))
    with pytest.raises(ModelError, match="not a CycleGAN"):
        load_cyclegan_deidentifier(tmp_path, "cg")


def test_training_script_parses_its_documented_options():
    from export.train_cyclegan import build_parser

    args = build_parser().parse_args(["--size", "tiny", "--seed", "3", "--max-minutes", "1", "--adversarial", "wgan-gp"])
    assert isinstance(args, argparse.Namespace) and args.seed == 3 and args.adversarial == "wgan-gp"


def test_committed_default_model_restores_a_face_it_pixelated():
    from streamd.runtime.cyclegan import DEFAULT_CYCLEGAN_MODEL
    from streamd.runtime.manifest import default_models_dir

    models = default_models_dir()
    deidentifier = load_cyclegan_deidentifier(models, DEFAULT_CYCLEGAN_MODEL)
    reidentifier = load_cyclegan_reidentifier(models, DEFAULT_CYCLEGAN_MODEL)
    size = deidentifier.spec.resolution
    ramp = np.linspace(40, 215, size, dtype=np.float32)
    face = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8)[None]
    pixelated = deidentifier.deidentify(face)
    restored = reidentifier.reidentify(pixelated)
    assert pixelated.shape == restored.shape == face.shape
    error = np.abs(restored.astype(np.float32) - face.astype(np.float32)).mean()
    assert error < 10.0, error
