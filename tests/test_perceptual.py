"""LPIPS, FID and PieAPP through lpips, pytorch-fid and piq, on randomly initialised weight files.

The weight files are built here under the exact names the packages load from the torch hub cache, in
a temporary TORCH_HOME, so the real loading and scoring paths run without any download. Their hashes
cannot match the published ones, so every number is reported as unverified.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamd.evaluation import perceptual
from streamd.evaluation.perceptual import networks
from streamd.evaluation.perceptual.weights import WEIGHT_SPECS

PACKAGES = ("torch", "torchvision", "lpips", "pytorch_fid", "piq")
needs_packages = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in PACKAGES),
    reason="the perceptual metrics need the 'perceptual' extra (torchvision, lpips, pytorch-fid, piq)")


def _fid_inception_state_dict() -> dict:
    """pytorch-fid's FID InceptionV3 architecture, randomly initialised (fid_inception_v3 without its download)."""
    from pytorch_fid import inception as fid_inception

    import torch

    model = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    model.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
    model.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
    for module in model.modules():  # keep activations at unit scale through the 94 layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.state_dict()


def _pieapp_state_dict() -> dict:
    """piq's PieAPP network, randomly initialised, with the published file's 1-D `ref_score_subtract.weight`."""
    from piq.pieapp import PieAPPModel

    state = PieAPPModel().state_dict()
    state["ref_score_subtract.weight"] = state["ref_score_subtract.weight"].squeeze(1)
    return state


@pytest.fixture(scope="module")
def random_weights_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds randomly initialised weights under the official file names."""
    import torch

    torchvision = networks.import_torchvision()
    torch.manual_seed(0)
    home = tmp_path_factory.mktemp("torch-home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), checkpoints / WEIGHT_SPECS["lpips"].file_name)
    torch.save(_fid_inception_state_dict(), checkpoints / WEIGHT_SPECS["fid"].file_name)
    torch.save(_pieapp_state_dict(), checkpoints / WEIGHT_SPECS["pieapp"].file_name)
    return home


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.hub

    def fail(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download was attempted: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


@pytest.fixture
def torch_home(random_weights_home: Path, monkeypatch: pytest.MonkeyPatch, no_downloads) -> Path:
    """TORCH_HOME with the random weights; the networks stay loaded across tests (keyed by file)."""
    monkeypatch.setenv("TORCH_HOME", str(random_weights_home))
    return random_weights_home


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_downloads) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home"


def _faces(count: int, seed: int, side: int = 96) -> np.ndarray:
    """Smooth random colour images, uint8 N x side x side x 3."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 12, 12, 3), dtype=np.uint8)
    return np.stack([cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC) for image in small])


def _perturbed(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(images.astype(np.float64) + noise, 0, 255).astype(np.uint8)


@needs_packages
def test_without_weight_files_every_metric_is_skipped_and_nothing_is_downloaded(empty_torch_home: Path) -> None:
    statuses = {status.metric: status for status in perceptual.perceptual_status()}
    assert set(statuses) == {"lpips", "fid", "pieapp"}
    for metric, status in statuses.items():
        assert not status.available and status.weights is None
        assert status.reason.startswith("skipped: its weight file " + WEIGHT_SPECS[metric].file_name)
        assert str(empty_torch_home / "hub" / "checkpoints") in status.reason and "never downloaded" in status.reason
        assert status.describe()["status"] == "skipped"
    images = _faces(2, 0)
    assert perceptual.lpips_distance(images, images) is None
    assert not perceptual.lpips_status().available
    assert perceptual.fid(images, images) is None
    assert perceptual.pieapp_score(images, images) is None
    assert not (empty_torch_home / "hub" / "checkpoints").exists() or \
        not any((empty_torch_home / "hub" / "checkpoints").iterdir())


def test_a_missing_package_is_named(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(networks.importlib.util, "find_spec",
                        lambda name, *args: None if name == "piq" else real_find_spec(name, *args))
    status = {s.metric: s for s in perceptual.perceptual_status()}["pieapp"]
    assert not status.available
    assert status.reason == ("skipped: the piq package is not installed (install the 'perceptual' extra: "
                             "pip install -e '.[perceptual]')")


def test_frechet_distance_matches_pytorch_fid() -> None:
    """The low-rank trace identity gives pytorch-fid's value; sets with more images than dimensions use it directly."""
    if any(importlib.util.find_spec(name) is None for name in PACKAGES):
        pytest.skip("needs the 'perceptual' extra")
    networks.import_torchvision()
    from pytorch_fid import fid_score
    rng = np.random.default_rng(3)
    few_a, few_b = rng.normal(size=(5, 24)), rng.normal(0.4, 1.3, size=(7, 24))
    expected = fid_score.calculate_frechet_distance(few_a.mean(0), np.cov(few_a, rowvar=False),
                                                    few_b.mean(0), np.cov(few_b, rowvar=False))
    assert perceptual.frechet_distance(few_a, few_b) == pytest.approx(expected, rel=1e-6)
    assert perceptual.frechet_distance(few_a, few_a) == pytest.approx(0.0, abs=1e-9)
    many_a, many_b = rng.normal(size=(40, 6)), rng.normal(0.5, 1.0, size=(30, 6))
    expected = fid_score.calculate_frechet_distance(many_a.mean(0), np.cov(many_a, rowvar=False),
                                                    many_b.mean(0), np.cov(many_b, rowvar=False))
    assert perceptual.frechet_distance(many_a, many_b) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        perceptual.frechet_distance(few_a[:1], few_b)


@needs_packages
def test_lpips_through_the_lpips_package(torch_home: Path) -> None:
    images = _faces(3, 0)
    identical = perceptual.lpips_distance(images, images.copy())
    small = perceptual.lpips_distance(images, _perturbed(images, 8.0))
    large = perceptual.lpips_distance(images, _perturbed(images, 60.0))
    assert identical.shape == (3,) and np.allclose(identical, 0.0, atol=1e-6)
    assert np.all(small > 1e-4) and np.all(large > small)
    as_float = perceptual.lpips_distance(images[..., ::-1] / 255.0, _perturbed(images, 8.0)[..., ::-1] / 255.0,
                                         channel_order="bgr")
    assert np.allclose(as_float, small, rtol=1e-4, atol=1e-6)
    status = perceptual.lpips_status()
    assert status.available and status.package.startswith("lpips ")
    assert status.weights.path == torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert not status.weights.verified and len(status.weights.sha256) == 64
    assert "unverified weights, not comparable with published numbers" in status.reason
    with pytest.raises(ValueError, match="differ in shape"):
        perceptual.lpips_distance(images, images[:2])


@needs_packages
def test_fid_through_pytorch_fid(torch_home: Path) -> None:
    originals = _faces(2, 0, side=64)
    features = perceptual.inception_features(originals)
    assert features.shape == (2, 2048) and np.all(np.isfinite(features))
    shifted_features = perceptual.inception_features(np.clip(originals.astype(np.int16) + 70, 0, 255).astype(np.uint8))
    shifted = perceptual.frechet_distance(features, shifted_features)
    itself = perceptual.frechet_distance(features, perceptual.inception_features(originals.copy()))
    assert features.mean() > 1e-3 and shifted > 1e-3
    assert itself == pytest.approx(0.0, abs=1e-6 * shifted)


@needs_packages
def test_pieapp_through_piq(torch_home: Path) -> None:
    reference = _faces(2, 0, side=80)
    values = perceptual.pieapp_score(_perturbed(reference, 30.0), reference)
    assert values.shape == (2,) and np.all(np.isfinite(values))
    status = {s.metric: s for s in perceptual.perceptual_status()}["pieapp"]
    assert status.available and not status.comparable
    with pytest.raises(ValueError, match="at least 64x64"):
        perceptual.pieapp_score(reference[:, :40, :40], reference[:, :40, :40])


@needs_packages
def test_a_file_that_is_not_a_state_dict_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           no_downloads) -> None:
    import torch

    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"model": Fraction(1, 3)}, checkpoints / WEIGHT_SPECS["lpips"].file_name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    status = perceptual.lpips_status()
    assert not status.available and "is not a plain tensor state dict" in status.reason
    assert status.describe()["weights"]["verified"] is False


@needs_packages
def test_eval_report_carries_the_perceptual_metrics(torch_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("dlib", reason="the identity judge needs dlib (the 'eval' extra)")
    pytest.importorskip("matplotlib", reason="the report plots need matplotlib (the 'eval' extra)")
    from streamd import sample_faces
    from streamd.evaluation import run_evaluation

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sample_faces.sample_path("astronaut"), photos / "astronaut.png")
    shutil.copy(sample_faces.sample_path("astronaut"), photos / "astronaut-again.png")
    outcome = run_evaluation(photos, ["blur+sealed"], tmp_path / "out", diversity_keys=1)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    section = report["perceptual_metrics"]
    for metric in ("lpips", "fid", "pieapp"):
        assert section[metric]["status"] == "computed"
        assert section[metric]["weights"]["verified"] is False
        assert section[metric]["comparable_with_published"] is False
        assert "unverified weights, not comparable with published numbers" in section[metric]["reason"]
    assert "high-variance" in section["fid"]["definition"]
    aggregate = report["methods"]["blur+sealed"]["aggregate"]
    assert aggregate["lpips_mean"] > 0.0 and np.isfinite(aggregate["pieapp_mean"]) and aggregate["fid"] > 0.0
    restore = aggregate["restore"]
    assert restore["lpips_mean"] == pytest.approx(0.0, abs=1e-6)
    assert restore["fid"] == pytest.approx(0.0, abs=1e-6 * aggregate["fid"])
    face = report["methods"]["blur+sealed"]["faces"][0]
    assert face["lpips"] > 0.0 and face["restore"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    markdown = outcome.files["markdown"].read_text()
    assert "| LPIPS surrogate * |" in markdown and "| blur+sealed |" in markdown
    assert "\\* unverified weights, not comparable with published numbers." in markdown
