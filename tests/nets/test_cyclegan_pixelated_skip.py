"""G with the pixelated skip: a fixed layer that pixelates exactly like the target domain, a G that starts
as that pixelation, and its ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.export_cyclegan import export_cyclegan  # noqa: E402
from streamd.anonymize.pixelate import pixelate_face_crop  # noqa: E402
from streamd.nets.cyclegan import (  # noqa: E402
    CycleGanConfig,
    CycleGanGenerators,
    FacePixelation,
    cyclegan_config,
    load_cyclegan_generators,
    save_cyclegan_generators,
)
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr  # noqa: E402


def random_crops(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(("size", "blocks"), [(128, 6), (64, 20), (32, 3)])
def test_the_layer_pixelates_like_the_target_domain(size: int, blocks: int) -> None:
    crops = random_crops(2, size, seed=size)
    layer = FacePixelation(size, blocks)
    with torch.no_grad():
        out = nchw_to_crops_bgr(layer(torch.from_numpy(crops_bgr_to_nchw(crops))).numpy())
    expected = np.stack([pixelate_face_crop(crop, blocks) for crop in crops])
    assert np.abs(out.astype(np.int16) - expected).max() <= 1


def test_g_starts_as_the_target_pixelation_and_f_does_not() -> None:
    config = cyclegan_config("tiny", resolution=64, g_skip_blocks_per_side=4)
    generators = CycleGanGenerators(config).eval()
    crops = random_crops(2, 64, seed=1)
    images = torch.from_numpy(crops_bgr_to_nchw(crops))
    with torch.no_grad():
        g_out = nchw_to_crops_bgr(generators.g(images).numpy())
        f_out = nchw_to_crops_bgr(generators.f(images).numpy())
    expected = np.stack([pixelate_face_crop(crop, 4) for crop in crops])
    assert np.abs(g_out.astype(np.int16) - expected).max() <= 1
    assert np.abs(f_out.astype(np.int16) - expected).max() > 1
    assert "g.skip.rows" not in generators.state_dict(), "the fixed matrices are rebuilt, not stored"


def test_config_round_trips_and_needs_the_global_skip(tmp_path) -> None:
    config = cyclegan_config("tiny", resolution=64, g_skip_blocks_per_side=4)
    assert CycleGanConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    del old["g_skip_blocks_per_side"]
    assert CycleGanConfig.from_dict(old).g_skip_blocks_per_side == 0, "entries written before the option load"
    with pytest.raises(ValueError, match="global_skip"):
        cyclegan_config("paper", g_skip_blocks_per_side=6)
    with pytest.raises(ValueError, match=">= 0"):
        cyclegan_config("tiny", g_skip_blocks_per_side=-1)
    generators = CycleGanGenerators(config)
    save_cyclegan_generators(generators, tmp_path / "g.pt")
    assert load_cyclegan_generators(tmp_path / "g.pt").config == config


def test_onnx_export_keeps_the_pixelated_skip(tmp_path) -> None:
    torch.manual_seed(0)
    generators = CycleGanGenerators(cyclegan_config("tiny", resolution=64, g_skip_blocks_per_side=4)).eval()
    result = export_cyclegan(generators, tmp_path, "cg")
    assert result["deid_max_abs_diff"] < 1e-4 and result["reid_max_abs_diff"] < 1e-4
