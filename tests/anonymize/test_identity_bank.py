"""The identity bank of keyed synthetic identity models: how it is chosen, how a key picks an entry,
and that the bundled bank's identities are distinct for a face recognizer."""

from __future__ import annotations

import numpy as np
import pytest

from export.identity_bank import distances_to, farthest_point_order, pairwise_distances
from streamd.anonymize.key_code import key_code
from streamd.anonymize.synthetic import SyntheticCodec
from streamd.runtime.manifest import bundled_models_dir, load_manifest

MODEL = "sdn-synth128"


def test_pairwise_distances_are_euclidean():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    expected = np.array([[0, 5, 10], [5, 0, 5], [10, 5, 0]], np.float64)
    assert np.allclose(pairwise_distances(points), expected)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        pairwise_distances(np.zeros(3))


def test_distances_to_one_reference():
    points = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert np.allclose(distances_to(points, np.array([0.0, 0.0])), [0.0, 5.0])
    with pytest.raises(ValueError, match="reference"):
        distances_to(points, np.zeros(3))


def test_the_bank_leaves_out_candidates_close_to_a_tuning_original():
    """Candidates that dlib places near an original face in some tuning crop never enter the bank,
    however far they are from the other candidates."""
    from export.build_synthetic_identity import Screening, choose_bank

    rng = np.random.default_rng(5)
    points = rng.normal(0.0, 1.0, (40, 6))
    pairwise = np.stack([pairwise_distances(points), pairwise_distances(points) + 0.1])
    from_original = rng.uniform(0.7, 0.9, (40, 2))
    outlier = int(np.argmax(pairwise_distances(points).mean(axis=1)))  # farthest-point selection starts here
    from_original[outlier, 1] = 0.55
    screening = Screening(np.arange(40, dtype=np.float32)[:, None], ["a@70px", "b@70px"], pairwise, from_original)
    bank, summary = choose_bank(screening, 8, 0.6)
    assert outlier not in bank[:, 0].astype(int).tolist()
    assert summary["eligible_candidates"] == 39 and summary["from_original_min"] >= 0.6
    unscreened, _ = choose_bank(screening, 8, 0.0)
    assert outlier in unscreened[:, 0].astype(int).tolist()
    with pytest.raises(SystemExit, match="only 0 candidates"):
        choose_bank(screening, 8, 0.95)


def test_farthest_point_selection_takes_one_identity_from_each_cluster():
    rng = np.random.default_rng(3)
    centres = rng.normal(0.0, 10.0, (6, 8))
    points = np.concatenate([centre + rng.normal(0.0, 0.1, (12, 8)) for centre in centres])
    order = farthest_point_order(pairwise_distances(points), 6)
    assert sorted(index // 12 for index in order) == list(range(6))
    closest_chosen = pairwise_distances(points[order])[np.triu_indices(6, 1)].min()
    closest_centres = pairwise_distances(centres)[np.triu_indices(6, 1)].min()
    assert closest_chosen > closest_centres - 1.0  # as far apart as the clusters themselves
    with pytest.raises(ValueError, match="count"):
        farthest_point_order(pairwise_distances(points), 0)


@pytest.fixture(scope="module")
def codec():
    codec = SyntheticCodec.from_manifest(bundled_models_dir(), MODEL, intra_op_threads=1)
    yield codec
    codec.close()


def bank_size() -> int:
    return int(load_manifest(bundled_models_dir()).model(MODEL).require("config")["bank_size"])


def entry_codes(size: int, dimensions: int) -> np.ndarray:
    """One code per bank entry: entry i is the largest of the first `size` values."""
    codes = np.zeros((size, dimensions), np.float32)
    codes[np.arange(size), np.arange(size)] = 3.0
    return codes


def test_keys_pick_every_bank_entry_about_equally_often(codec):
    size, dimensions = bank_size(), codec.spec.code_dimensions
    entries = codec.identity(entry_codes(size, dimensions)).reshape(size, -1)
    keys = 50 * size
    codes = np.stack([key_code(number.to_bytes(32, "big"), dimensions) for number in range(keys)])
    faces = np.concatenate([codec.identity(codes[start:start + 256]) for start in range(0, keys, 256)])
    faces = faces.reshape(keys, -1)
    nearest = np.argmin(((faces[:, None, :] - entries[None]) ** 2).sum(axis=2), axis=1)
    assert np.abs(faces - entries[nearest]).max() < 1e-5  # every key's face is exactly one bank entry
    counts = np.bincount(nearest, minlength=size)
    expected = keys / size
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < size + 4.0 * np.sqrt(2.0 * size)  # four standard deviations above its mean


def test_bank_entries_are_distinct_faces(codec):
    size = bank_size()
    faces = codec.identity(entry_codes(size, codec.spec.code_dimensions)).reshape(size, -1)
    closest = pairwise_distances(faces)[np.triu_indices(size, 1)].min()
    assert closest > 1.0  # no two entries are the same face (values in [-1, 1] over 128x128 pixels)


def test_bank_identities_are_distinct_for_dlib_on_a_tuning_face(codec):
    """A subset of the bank rendered into the tuning face (astronaut): dlib tells them apart."""
    pytest.importorskip("dlib")
    import cv2
    import dlib

    from export.sdn_data import detect_faces_centerface
    from streamd import sample_faces
    from streamd.anonymize.synthetic import synthetic_crop_matrix
    from streamd.evaluation.identity import DlibIdentityJudge
    from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

    photo = sample_faces.astronaut_bgr()
    kps5 = detect_faces_centerface(photo)[0]
    size = codec.spec.resolution
    matrix = synthetic_crop_matrix(kps5, size, codec.spec.zoom, codec.spec.centre_y)
    crop = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    big = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    rects = dlib.get_frontal_face_detector()(np.ascontiguousarray(big[:, :, ::-1]), 1)
    assert rects, "dlib finds the tuning face"
    box = np.array([rects[0].left(), rects[0].top(), rects[0].right(), rects[0].bottom()], np.float64)
    subset = 8
    codes = entry_codes(bank_size(), codec.spec.code_dimensions)[:subset]
    surrogates = nchw_to_crops_bgr(codec.encode(np.repeat(crops_bgr_to_nchw(crop[None]), subset, axis=0), codes))
    judge = DlibIdentityJudge()
    embeddings = np.stack([judge.embed(cv2.resize(image, (256, 256), interpolation=cv2.INTER_CUBIC), box)
                           for image in surrogates])
    distances = pairwise_distances(embeddings)[np.triu_indices(subset, 1)]
    assert float(np.mean(distances >= judge.threshold)) >= 0.9, np.round(distances, 3)


def test_the_surrogate_keeps_only_a_plane_of_the_original_light():
    """Two originals with the same light plane but different faces give the same surrogate inside the
    oval; a plane of light is carried over exactly."""
    import torch

    from streamd.nets.synthetic_identity import SyntheticIdentity, SyntheticIdentityConfig

    config = SyntheticIdentityConfig(resolution=64, basis_resolution=16, components=3, bank_size=4)
    generator = torch.Generator().manual_seed(0)
    model = SyntheticIdentity(config, torch.full((256,), 0.5), torch.randn(3, 256, generator=generator) * 0.05,
                              torch.ones(3), torch.randn(4, 3, generator=generator))
    centres = (torch.arange(64, dtype=torch.float32) + 0.5) / 64
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    plane = (0.3 + 0.3 * xx + 0.2 * yy)[None, None]
    assert torch.allclose(model.light(plane), plane, atol=1e-4)
    bumps = 0.15 * torch.sin(xx * 40.0) * torch.sin(yy * 37.0)  # detail with (almost) no plane in it
    flat = plane.repeat(1, 3, 1, 1) * 2 - 1
    detailed = (plane + bumps).repeat(1, 3, 1, 1) * 2 - 1
    code = torch.zeros(1, config.code_dimensions)
    code[0, 2] = 1.0
    inside = model.mask[0, 0] > 0.99
    difference = (model.surrogate(flat, code) - model.surrogate(detailed, code)).abs()[0][:, inside]
    assert float(difference.mean()) < 0.02  # the original's detail is not in the surrogate
    assert float((model.surrogate(flat, code) - flat).abs()[0][:, inside].mean()) > 0.01  # the face is the bank's


def test_a_saved_screening_is_reused_only_under_the_same_settings(tmp_path):
    from export.build_synthetic_identity import Screening, load_screening, save_screening, screening_key
    from streamd.nets.synthetic_identity import SyntheticIdentityConfig

    rng = np.random.default_rng(2)
    screening = Screening(rng.normal(size=(5, 3)).astype(np.float32), ["a@70px"], rng.uniform(size=(1, 5, 5)),
                          rng.uniform(size=(5, 1)))
    key = screening_key(SyntheticIdentityConfig(), 5, [70], True)
    path = tmp_path / "screening.npz"
    save_screening(path, screening, key)
    again = load_screening(path, key)
    assert np.array_equal(again.pairwise, screening.pairwise) and again.crop_ids == ["a@70px"]
    with pytest.raises(SystemExit, match="other settings"):
        load_screening(path, screening_key(SyntheticIdentityConfig(amplitude=3.0), 5, [70], True))


def test_the_tuning_objective_reads_the_mean_and_the_low_tail():
    from export.tune_synthetic_identity import tail_summary

    distances = np.array([[0.55, 0.7, 0.8, 0.9], [0.62, 0.75, 0.85, 0.95]])
    summary = tail_summary(distances, [1.0, 0.5])
    assert summary["pairs"] == 8 and summary["min"] == 0.55
    assert summary["below_0.6"] == 0.125 and summary["below_0.65"] == 0.25
    assert abs(summary["mean"] - distances.mean()) < 1e-4 and summary["identity_pairs_at_least_0.6"] == 0.75
