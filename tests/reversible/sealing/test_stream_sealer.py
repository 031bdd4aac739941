"""The sealer's quantized box geometry is what `SealBinding.from_geometry` makes of the same region."""

from __future__ import annotations

import numpy as np

from streamd.reversible.sealing.payloads import SealBinding
from streamd.reversible.sealing.stream_sealer import box_affine_e4, box_region_from_binding


def test_box_geometry_matches_the_general_quantization_and_inverts():
    rng = np.random.default_rng(3)
    for _ in range(200):
        x0, y0 = (int(value) for value in rng.integers(0, 1900, 2))
        width, height = (int(value) for value in rng.integers(1, 400, 2))
        box = np.array([x0 + 3.217, y0 + 2.5, x0 + width - 4.004, y0 + height - 1.995]) * rng.uniform(0.99, 1.01)
        general = SealBinding.from_geometry(
            camera="cam", stream_epoch="e1", frame_index=7, pts=3600, track_id=2,
            affine=[[1.0, 0.0, -x0], [0.0, 1.0, -y0]], crop_wh=(width, height), box_xyxy=box,
            face_stream=(0, 1, 512, 512, 0))
        direct = SealBinding(
            camera="cam", stream_epoch="e1", frame_index=7, pts=3600, track_id=2,
            affine_e4=box_affine_e4((x0, y0, x0 + width, y0 + height)), crop_wh=(width, height),
            box_e2=tuple(int(round(float(value) * 100)) for value in box), face_stream=(0, 1, 512, 512, 0))
        assert direct == general and direct.canonical_bytes() == general.canonical_bytes()
        assert box_region_from_binding(direct) == (x0, y0, x0 + width, y0 + height)
