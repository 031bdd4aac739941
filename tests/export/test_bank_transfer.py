"""The split-half check of identity-bank screening: it must tell a rule that carries to unseen people
from one that only fits the people it saw."""

import numpy as np

from export.bank_transfer import (
    Judged,
    choose_by_margin,
    choose_by_mean,
    is_colour,
    person_candidate_spread,
    split_half,
)

PEOPLE, CANDIDATES, SIZE = 40, 120, 8


def _layout(candidate_sd: float, residual_sd: float, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    from_original = (0.75 + rng.normal(0, 0.03, (PEOPLE, 1)) + rng.normal(0, candidate_sd, (1, CANDIDATES))
                     + rng.normal(0, residual_sd, (PEOPLE, CANDIDATES)))
    points = rng.normal(0, 0.5, (CANDIDATES, 16))
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=2)
    return from_original, np.repeat(pairwise[None], PEOPLE, axis=0)


def _rules(from_original: np.ndarray, pairwise: np.ndarray) -> dict[str, object]:
    return {"margin": lambda seen: choose_by_margin(from_original, pairwise, seen, SIZE, 0.6),
            "mean": lambda seen: choose_by_mean(from_original, pairwise, seen, SIZE, 24)}


def test_a_property_of_the_candidates_carries_to_the_other_half():
    from_original, pairwise = _layout(candidate_sd=0.08, residual_sd=0.02)
    shipped = list(range(SIZE))
    results = split_half(from_original, pairwise, shipped, _rules(from_original, pairwise), splits=10)
    for row in results.values():
        assert row["splits"] == 10
        assert row["below_06"] < row["shipped_below_06"] / 2
    assert results["mean"]["mean"] > results["mean"]["shipped_mean"] + 0.05


def test_a_tail_of_person_and_candidate_together_does_not_carry():
    from_original, pairwise = _layout(candidate_sd=0.0, residual_sd=0.08)
    shipped = list(range(SIZE))
    results = split_half(from_original, pairwise, shipped, _rules(from_original, pairwise), splits=20)
    for row in results.values():
        assert abs(row["mean"] - row["shipped_mean"]) < 0.02
        assert abs(row["below_06"] - row["shipped_below_06"]) < 0.03


def test_a_rule_with_too_few_eligible_candidates_is_reported_as_such():
    from_original, pairwise = _layout(candidate_sd=0.0, residual_sd=0.02)
    results = split_half(from_original, pairwise, list(range(SIZE)),
                         {"impossible": lambda seen: choose_by_margin(from_original, pairwise, seen, SIZE, 0.99)}, 5)
    assert results == {"impossible": {"splits": 0}}


def test_judged_counts_the_tail_and_the_pairs_apart():
    from_original = np.array([[0.5, 0.7], [0.8, 0.62]])
    pairwise = np.array([[[0.0, 0.5], [0.5, 0.0]], [[0.0, 0.9], [0.9, 0.0]]])
    judged = Judged.of([0, 1], [0, 1], from_original, pairwise)
    assert judged.below_06 == 0.25 and judged.below_065 == 0.5 and judged.closest == 0.5
    assert judged.keys_differ == 0.25  # one person of two sees the pair apart, and half the keys pick another


def test_the_spread_finds_which_effect_is_large():
    from_original, _ = _layout(candidate_sd=0.1, residual_sd=0.01)
    spread = person_candidate_spread(from_original)
    assert spread["candidate"] > 0.08 and spread["residual"] < 0.02


def test_grey_and_line_drawings_are_not_colour_faces():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 255, (32, 32, 1), dtype=np.uint8), 3, axis=2)
    skin = np.zeros((32, 32, 3), np.uint8)
    skin[:] = (90, 130, 190)
    assert not is_colour(grey)
    assert is_colour(skin)
