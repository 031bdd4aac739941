"""Attacks on the key of a keyed surrogate model: what an attacker holding the model's graphs and a
surrogate, but not the key, can get back of the original face.

Every attack searches the model's code space (password bits, or the Gaussian key code) for a code
under which the decoder's output looks like a face that would encode back to the surrogate. The
attacker's score of a code c for surrogate s (lower is better, no reference needed):

    cycle(c) = mean |En(De(s, c), c) - s|      (cycle consistency through decoder and encoder)
    rough(c) = mean |Laplacian(De(s, c))|      (a wrong code leaves a noisy face)
    score(c) = cycle(c) + rough(c)

Attacks, each ending in one guess De(s, c) per face:
- ignore_password: the code that carries no key (every bit 0.5, or the zero vector);
- per_bit_probe: each coordinate on its own set low and high (0/1, or -1/+1) around the mean code,
  keeping the better value;
- local_search: from the probe, every single-coordinate change and random pairs, best score wins;
- hill_climb: from the local search, random coordinate changes kept when the score drops;
- gradient_descent: the code relaxed to continuous values ([0, 1] for bits), descended along SPSA
  estimates of the score's gradient (two evaluations per step through the ONNX graphs), then rounded
  for bits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from streamd.evaluation.keyed_models import KeyedModel

ATTACKS = ("ignore_password", "per_bit_probe", "local_search", "hill_climb", "gradient_descent")


@dataclasses.dataclass(frozen=True)
class AttackBudget:
    local_pairs: int = 64
    hill_steps: int = 150
    gradient_steps: int = 60
    #: How far one gradient step moves a coordinate, on average.
    gradient_step: float = 0.05
    spsa_scale: float = 0.1


def laplacian_energy(images: np.ndarray) -> np.ndarray:
    """(N,) mean absolute 4-neighbour Laplacian of (N, C, H, W) images."""
    centre = images[:, :, 1:-1, 1:-1]
    laplacian = (4 * centre - images[:, :, :-2, 1:-1] - images[:, :, 2:, 1:-1]
                 - images[:, :, 1:-1, :-2] - images[:, :, 1:-1, 2:])
    return np.abs(laplacian).mean(axis=(1, 2, 3))


class CodeScorer:
    """The attacker's score of many codes for one surrogate, in batches."""

    def __init__(self, model: KeyedModel, surrogate: np.ndarray, batch: int = 32) -> None:
        self.model = model
        self.surrogate = surrogate  # (3, S, S)
        self.batch = batch
        self.evaluations = 0

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        scores = []
        for start in range(0, len(codes), self.batch):
            chunk = codes[start:start + self.batch].astype(np.float32)
            surrogates = np.repeat(self.surrogate[None], len(chunk), axis=0)
            decoded = self.model.decode(surrogates, chunk)
            cycled = self.model.encode(np.clip(decoded, -1, 1), chunk)
            cycle = np.abs(cycled - surrogates).mean(axis=(1, 2, 3))
            scores.append(cycle + laplacian_energy(decoded))
            self.evaluations += len(chunk)
        return np.concatenate(scores)


def mean_code(model: KeyedModel) -> np.ndarray:
    """The code that carries no key: every bit at 0.5, or the zero vector."""
    return np.full(model.code_size, 0.5 if model.code_kind == "bits" else 0.0, np.float32)


def levels(model: KeyedModel) -> tuple[float, float]:
    return (0.0, 1.0) if model.code_kind == "bits" else (-1.0, 1.0)


def per_bit_probe(model: KeyedModel, scorer: CodeScorer) -> np.ndarray:
    low, high = levels(model)
    base = np.full(model.code_size, 0.5 if model.code_kind == "bits" else 0.0, np.float32)
    candidates = []
    for value in (low, high):
        block = np.repeat(base[None], model.code_size, axis=0)
        block[np.arange(model.code_size), np.arange(model.code_size)] = value
        candidates.append(block)
    scores = scorer(np.concatenate(candidates)).reshape(2, model.code_size)
    return np.where(scores[1] < scores[0], high, low).astype(np.float32)


def neighbours(model: KeyedModel, code: np.ndarray, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Every single-coordinate change of `code` and `pairs` random two-coordinate changes."""
    n = model.code_size

    def changed(block: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> None:
        if model.code_kind == "bits":
            block[rows, columns] = 1.0 - block[rows, columns]
        else:
            block[rows, columns] = -block[rows, columns] if np.all(block[rows, columns] != 0) else 1.0

    singles = np.repeat(code[None], n, axis=0)
    changed(singles, np.arange(n), np.arange(n))
    doubles = np.repeat(code[None], pairs, axis=0)
    for row in range(pairs):
        columns = rng.choice(n, size=2, replace=False)
        changed(doubles, np.array([row, row]), columns)
    return np.concatenate([singles, doubles])


def local_search(model: KeyedModel, scorer: CodeScorer, start: np.ndarray, budget: AttackBudget,
                 rng: np.random.Generator) -> np.ndarray:
    candidates = np.concatenate([start[None], neighbours(model, start, budget.local_pairs, rng)])
    return candidates[int(np.argmin(scorer(candidates)))].copy()


def hill_climb(model: KeyedModel, scorer: CodeScorer, start: np.ndarray, budget: AttackBudget,
               rng: np.random.Generator) -> np.ndarray:
    code = start.copy()
    best = float(scorer(code[None])[0])
    for _ in range(budget.hill_steps):
        candidate = code.copy()
        index = int(rng.integers(model.code_size))
        if model.code_kind == "bits":
            candidate[index] = 1.0 - candidate[index]
        else:
            candidate[index] += float(rng.normal(0.0, 0.5))
        score = float(scorer(candidate[None])[0])
        if score < best:
            code, best = candidate, score
    return code


def gradient_descent(model: KeyedModel, scorer: CodeScorer, start: np.ndarray, budget: AttackBudget,
                     rng: np.random.Generator) -> np.ndarray:
    code = start.astype(np.float32).copy()
    for _ in range(budget.gradient_steps):
        direction = rng.choice([-1.0, 1.0], size=model.code_size).astype(np.float32)
        plus, minus = scorer(np.stack([code + budget.spsa_scale * direction, code - budget.spsa_scale * direction]))
        gradient = (plus - minus) / (2 * budget.spsa_scale) * direction
        rms = float(np.sqrt(np.mean(gradient**2)))
        code = code - budget.gradient_step * gradient / (rms + 1e-8)
        if model.code_kind == "bits":
            code = np.clip(code, 0.0, 1.0)
    return np.round(code).astype(np.float32) if model.code_kind == "bits" else code


def attack_codes(model: KeyedModel, surrogate: np.ndarray, budget: AttackBudget,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each attack's code for one float (3, S, S) surrogate."""
    scorer = CodeScorer(model, surrogate)
    ignore = mean_code(model)
    probe = per_bit_probe(model, scorer)
    local = local_search(model, scorer, probe, budget, rng)
    hill = hill_climb(model, scorer, local, budget, rng)
    gradient = gradient_descent(model, scorer, ignore, budget, rng)
    return {"ignore_password": ignore, "per_bit_probe": probe, "local_search": local, "hill_climb": hill,
            "gradient_descent": gradient}


Matcher = Callable[[np.ndarray, np.ndarray], float]


@dataclasses.dataclass
class FaceAttackResult:
    face_id: str
    code_errors: dict[str, float]
    distances: dict[str, float]

    def recovered(self, attack: str, threshold: float) -> bool:
        return self.distances[attack] < threshold


def attack_face(model: KeyedModel, face_id: str, crop: np.ndarray, distance: Matcher, budget: AttackBudget,
                rng: np.random.Generator) -> FaceAttackResult:
    """Anonymize the float (3, S, S) `crop` under a fresh random key, attack the surrogate, and measure
    each guess against the original with `distance` (float images in [-1, 1] -> identity distance).
    `code_errors`: wrong bits (bits) or the mean absolute code error (Gaussian) of each attack."""
    from streamd.evaluation.keyed_models import random_codes

    code = random_codes(model, 1)
    surrogate = model.encode(crop[None], code)[0]
    codes = attack_codes(model, surrogate, budget, rng)
    codes["right_key"] = code[0]
    guesses = model.decode(np.repeat(surrogate[None], len(codes), axis=0), np.stack(list(codes.values())))
    distances = {"surrogate_itself": distance(crop, surrogate)}
    errors: dict[str, float] = {}
    for (name, guess_code), guess in zip(codes.items(), guesses):
        distances[name] = distance(crop, np.clip(guess, -1, 1))
        difference = np.abs(guess_code - code[0])
        errors[name] = float(difference.sum()) if model.code_kind == "bits" else float(difference.mean())
    return FaceAttackResult(face_id, errors, distances)


def summarize_attacks(results: list[FaceAttackResult], threshold: float) -> dict[str, object]:
    names = [*ATTACKS, "surrogate_itself", "right_key"]
    summary: dict[str, object] = {"faces": len(results)}
    recovered = {name: float(np.mean([r.recovered(name, threshold) for r in results])) for name in names}
    summary["recovered"] = {name: round(value, 4) for name, value in recovered.items()}
    summary["recovered_by_any_attack"] = round(float(np.mean(
        [any(r.recovered(name, threshold) for name in (*ATTACKS, "surrogate_itself")) for r in results])), 4)
    summary["mean_distance"] = {name: round(float(np.mean([r.distances[name] for r in results])), 4) for name in names}
    summary["mean_code_error"] = {name: round(float(np.mean([r.code_errors[name] for r in results])), 4)
                                  for name in (*ATTACKS,)}
    return summary
