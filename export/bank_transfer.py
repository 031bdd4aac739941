"""Does screening the identity bank on some people keep its surrogates away from other people?

    python -m export.bank_transfer --pool-dir POOL --exclude-photos t1.jpg messi5.jpg face_swapped.jpg \
        astronaut.png Tom_Hanks_54745.png --out-dir docs/results/sdn-synth128-bank-transfer

The pool is every colour face (at least `--min-face` px wide, dlib's detector) in the photos under
POOL, one instance per person (dlib distance under `--same-person` counts as the same person), less
any face within 0.6 of a face in `--exclude-photos` (the held-out and tuning faces: nothing of them
is screened on). Photos whose faces are drawings are skipped by name (`NOT_PHOTOGRAPHS`). Where the
pool photos come from (all from the Debian and PyPI registries, none from the project):

    apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb POOL/opencv-doc
    pip download --no-deps --no-binary :all: face_recognition==1.3.0   # tests/test_images/
    pip download --no-deps ultralytics==8.4.190                        # ultralytics/assets/
    # and matplotlib's mpl-data/sample_data/grace_hopper.jpg (installed with the eval extra)

`--candidates` random identities of the model's face space (the build's seed, so the shipped bank is
among them) are rendered into every pool face's crop at `--width` px and embedded with dlib. The
pool is then split in two halves of people, `--splits` times at random: a bank is chosen on one half
by each rule (the build's margin rule on the smallest distance, and a rule on the mean distance) and
judged on the other half, next to the shipped bank judged on the same half. A rule that only fits
the people it saw leaves the other half's tail where the shipped bank has it. Writes report.json
(every distance) and report.md. Reads no evaluation face beyond the look-alike check.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from export.identity_bank import farthest_point_order

logger = logging.getLogger("export.bank_transfer")

DLIB_THRESHOLD = 0.6
#: Photo files whose faces are drawings or renderings, not photographs of people.
NOT_PHOTOGRAPHS = frozenset({"resultOutputWideoWrite.png", "outputVideoInput.png"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: A crop whose mean channel spread is under this is grey (or a drawing in lines), not a colour face.
COLOUR_SPREAD = 8.0
#: The smallest pairwise distance of two identities over a half's crops, robustly: this percentile.
PAIR_PERCENTILE = 10
#: The quick pass looks for small faces (upsampling once) in photos smaller than this (px).
QUICK_UPSAMPLE_BELOW = 1200


@dataclass(frozen=True)
class PoolFaces:
    ids: list[str]
    crops: np.ndarray  # (faces, size, size, 3) uint8 BGR
    boxes: np.ndarray  # (faces, 4) dlib box in the crop, scaled to JUDGE_SIDE
    originals: np.ndarray  # (faces, 128)


@dataclass(frozen=True)
class Judged:
    """What a bank does on some people: its surrogates' distances from their originals, and pairs."""
    mean: float
    below_06: float
    below_065: float
    closest: float
    keys_differ: float

    @staticmethod
    def of(chosen: list[int], people: list[int], from_original: np.ndarray, pairwise: np.ndarray) -> "Judged":
        distances = from_original[np.ix_(people, chosen)]
        upper = np.triu_indices(len(chosen), 1)
        apart = np.mean([np.mean(pairwise[person][np.ix_(chosen, chosen)][upper] >= DLIB_THRESHOLD)
                         for person in people])
        return Judged(float(distances.mean()), float(np.mean(distances < DLIB_THRESHOLD)),
                      float(np.mean(distances < 0.65)), float(distances.min()), float(apart * (1 - 1 / len(chosen))))


def choose_by_margin(from_original: np.ndarray, pairwise: np.ndarray, people: list[int], size: int,
                     margin: float) -> list[int] | None:
    """The build's rule: candidates at least `margin` from every original seen, then farthest-point."""
    return _farthest(np.flatnonzero(from_original[people].min(axis=0) >= margin), pairwise, people, size)


def choose_by_mean(from_original: np.ndarray, pairwise: np.ndarray, people: list[int], size: int,
                   top: int) -> list[int] | None:
    """The `top` candidates farthest from the seen originals on average, then farthest-point."""
    return _farthest(np.argsort(-from_original[people].mean(axis=0))[:top], pairwise, people, size)


def _farthest(eligible: np.ndarray, pairwise: np.ndarray, people: list[int], size: int) -> list[int] | None:
    if len(eligible) < size:
        return None
    closest = np.percentile(pairwise[people], PAIR_PERCENTILE, axis=0)
    return [int(eligible[i]) for i in farthest_point_order(closest[np.ix_(eligible, eligible)], size)]


def split_half(from_original: np.ndarray, pairwise: np.ndarray, shipped: list[int], rules: dict[str, object],
               splits: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per rule: means over `splits` random halves of a bank chosen on one half and judged on the other,
    and of the shipped bank judged on the same halves. `rules` maps a name to f(people) -> bank or None."""
    rng = np.random.default_rng(seed)
    people = from_original.shape[0]
    results = {}
    for name, rule in rules.items():
        chosen_rows, shipped_rows = [], []
        for _ in range(splits):
            order = rng.permutation(people)
            seen, unseen = [int(i) for i in order[: people // 2]], [int(i) for i in order[people // 2:]]
            chosen = rule(seen)
            if chosen is None:
                continue
            chosen_rows.append(Judged.of(chosen, unseen, from_original, pairwise))
            shipped_rows.append(Judged.of(shipped, unseen, from_original, pairwise))
        if not chosen_rows:
            results[name] = {"splits": 0}
            continue
        row = {"splits": len(chosen_rows)}
        for field in ("mean", "below_06", "below_065", "closest", "keys_differ"):
            row[field] = round(float(np.mean([getattr(r, field) for r in chosen_rows])), 4)
            row[f"shipped_{field}"] = round(float(np.mean([getattr(r, field) for r in shipped_rows])), 4)
        results[name] = row
    return results


def person_candidate_spread(from_original: np.ndarray) -> dict[str, float]:
    """Standard deviations of the person effect, the candidate effect and what is left (two-way layout)."""
    overall = from_original.mean()
    person = from_original.mean(axis=1) - overall
    candidate = from_original.mean(axis=0) - overall
    residual = from_original - overall - person[:, None] - candidate[None, :]
    return {"person": round(float(person.std()), 4), "candidate": round(float(candidate.std()), 4),
            "residual": round(float(residual.std()), 4)}


def pool_photo_paths(pool_dir: Path, min_face: int) -> list[Path]:
    """The photos under `pool_dir` where a quick dlib pass finds a face at least `min_face` px wide (the
    careful detection of `load_photos` runs on these only)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    found = []
    for path in sorted(pool_dir.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name in NOT_PHOTOGRAPHS or not path.is_file():
            continue
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None or min(bgr.shape[:2]) < min_face:
            continue
        upsample = 1 if max(bgr.shape[:2]) < QUICK_UPSAMPLE_BELOW else 0
        if any(rect.width() >= min_face for rect in detector(np.ascontiguousarray(bgr[:, :, ::-1]), upsample)):
            found.append(path)
    logger.info("%d photos under %s hold a face of %d px or more", len(found), pool_dir, min_face)
    return found


def is_colour(crop: np.ndarray) -> bool:
    spread = np.abs(crop[..., 0].astype(np.float32) - crop[..., 1]) + np.abs(crop[..., 1].astype(np.float32) - crop[..., 2])
    return float(spread.mean()) >= COLOUR_SPREAD


# The model, the geometry and the judge of one process, set by _start_worker.
_WORKER: dict[str, object] = {}


def _start_worker(models_dir: str, name: str, candidates: int) -> None:
    import torch

    from export.build_synthetic_identity import BANK_SEED, model_from_space
    from streamd.evaluation.identity import DlibIdentityJudge
    from streamd.nets.synthetic_identity import SyntheticIdentityConfig
    from streamd.runtime.manifest import load_manifest

    torch.set_num_threads(1)
    entry = load_manifest(Path(models_dir)).model(name)
    config = SyntheticIdentityConfig(**entry.require("config"))
    with np.load(entry.verified_path("face_space")) as stored:
        space = {key: stored[key] for key in stored.files}
    rng = np.random.default_rng(BANK_SEED)
    coefficients = np.clip(rng.standard_normal((candidates, config.components)), -2.5, 2.5).astype(np.float32)
    model = model_from_space(config, space, np.zeros((config.bank_size, config.components), np.float32))
    _WORKER.update(model=model, config=config, space=space, coefficients=coefficients, judge=DlibIdentityJudge(),
                   faces=model.face_from_coefficients(torch.from_numpy(coefficients)))


def _embed(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    from export.measure_sdn import JUDGE_SIDE

    return _WORKER["judge"].embed(cv2.resize(image, (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC), box)


def _screen_one(task: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Every candidate rendered into one pool crop, embedded: (candidates, 128)."""
    import torch

    from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

    crop, box = task
    faces = _WORKER["faces"]
    with torch.no_grad():
        rendered = _WORKER["model"].render(torch.from_numpy(crops_bgr_to_nchw(crop[None])).repeat(len(faces), 1, 1, 1),
                                           faces)
    return np.stack([_embed(image, box) for image in nchw_to_crops_bgr(rendered.numpy())])


def build_pool(photo_paths: list[Path], exclude_paths: list[Path], width: int, min_face: int,
               same_person: float) -> PoolFaces:
    from export.attack_sdn import face_crops
    from streamd.anonymize.synthetic import synthetic_crop_matrix
    from streamd.evaluation.held_out_frames import Photo, load_photos

    config = _WORKER["config"]

    class CropGeometry:
        crop_size = config.resolution

        def crop_matrix(self, kps5: np.ndarray) -> np.ndarray:
            return synthetic_crop_matrix(kps5, config.resolution, config.zoom, config.centre_y)

    photos = []
    for photo in load_photos(photo_paths, set()):
        # a face so small that scaling its photo to `width` would pass the detector's largest input is left out
        faces = [face for face in photo.faces if face.xyxy[2] - face.xyxy[0] >= min_face
                 and max(photo.bgr.shape[:2]) * width / (face.xyxy[2] - face.xyxy[0]) < 4000]
        if faces:
            photos.append(Photo(photo.name, photo.bgr, faces))
    crops = [item for item in face_crops(photos, CropGeometry(), [width]) if is_colour(item[1])]
    excluded = np.stack([_embed(crop, box) for _, crop, box in
                         face_crops(load_photos(exclude_paths, set()), CropGeometry(), [width])])
    kept: list[int] = []
    embeddings = [_embed(crop, box) for _, crop, box in crops]
    for index, embedding in enumerate(embeddings):
        if np.linalg.norm(excluded - embedding, axis=1).min() < DLIB_THRESHOLD:
            logger.info("%s looks like an excluded face: left out", crops[index][0])
        elif all(np.linalg.norm(embeddings[other] - embedding) >= same_person for other in kept):
            kept.append(index)
    logger.info("pool: %d people from %d colour faces in %d photos", len(kept), len(crops), len(photos))
    return PoolFaces([crops[i][0] for i in kept], np.stack([crops[i][1] for i in kept]),
                     np.stack([crops[i][2] for i in kept]), np.stack([embeddings[i] for i in kept]))


def markdown(report: dict[str, object]) -> str:
    lines = [f"# Identity bank screening: does it carry to people it did not see? ({report['model']})", "",
             f"{report['people']} people in the pool, {report['candidates']} candidate identities, "
             f"{report['splits']} random halves; each bank chosen on one half and judged on the other.", "",
             f"Shipped bank on the whole pool: mean {report['shipped_on_pool']['mean']:.3f}, under 0.6 "
             f"{report['shipped_on_pool']['below_06']:.4f}, under 0.65 {report['shipped_on_pool']['below_065']:.4f}, "
             f"two keys differ {report['shipped_on_pool']['keys_differ']:.3f}.", "",
             "Spread of the distance from the original (standard deviations): person "
             f"{report['spread']['person']}, candidate {report['spread']['candidate']}, what is left "
             f"{report['spread']['residual']}; the candidate's mean distance on one half against the other: "
             f"correlation {report['candidate_mean_split_correlation']:.3f}.", "",
             "| rule (chosen on one half) | halves | mean | under 0.6 | under 0.65 | two keys differ | "
             "shipped bank, same halves: under 0.6 / under 0.65 / differ |", "|---|---|---|---|---|---|---|"]
    for name, row in report["rules"].items():
        if not row["splits"]:
            lines.append(f"| {name} | 0 (too few eligible) | | | | | |")
            continue
        lines.append(f"| {name} | {row['splits']} | {row['mean']:.3f} | {row['below_06']:.4f} | {row['below_065']:.4f} | "
                     f"{row['keys_differ']:.3f} | {row['shipped_below_06']:.4f} / {row['shipped_below_065']:.4f} / "
                     f"{row['shipped_keys_differ']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-dir", type=Path, required=True)
    parser.add_argument("--exclude-photos", type=Path, nargs="+", required=True,
                        help="held-out and tuning photos: no face like theirs enters the pool")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-synth128")
    parser.add_argument("--candidates", type=int, default=320)
    parser.add_argument("--width", type=int, default=110, help="face width (px) of the pool crops")
    parser.add_argument("--min-face", type=int, default=50, help="smallest face (px) in its photo")
    parser.add_argument("--same-person", type=float, default=0.55)
    parser.add_argument("--splits", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in args.exclude_photos:
        if not path.is_file():
            raise SystemExit(f"{path}: no such photo")
    photo_paths = pool_photo_paths(args.pool_dir, args.min_face)
    if not photo_paths:
        raise SystemExit(f"{args.pool_dir}: no photo in it (see the module's help for where the pool comes from)")

    from export.measure_sdn import ProgressBar

    _start_worker(str(args.models_dir), args.name, args.candidates)
    pool = build_pool(photo_paths, args.exclude_photos, args.width, args.min_face, args.same_person)
    progress = ProgressBar(len(pool.ids), "pool faces screened")
    with multiprocessing.get_context("spawn").Pool(args.workers, _start_worker,
                                                   (str(args.models_dir), args.name, args.candidates)) as workers:
        embedded = []
        for embedding in workers.imap(_screen_one, zip(pool.crops, pool.boxes)):
            embedded.append(embedding)
            progress(1)
    progress.close()
    embedded = np.stack(embedded)  # (people, candidates, 128)
    from_original = np.linalg.norm(embedded - pool.originals[:, None, :], axis=2)
    pairwise = np.stack([np.linalg.norm(e[:, None] - e[None], axis=2) for e in embedded])
    coefficients, bank = _WORKER["coefficients"], _WORKER["space"]["bank"]
    shipped = [int(np.argmin(np.abs(coefficients - row).sum(axis=1))) for row in bank]
    if any(np.abs(coefficients[index] - row).max() > 1e-6 for index, row in zip(shipped, bank)):
        raise SystemExit("the shipped bank is not among the candidates: raise --candidates")
    size = len(bank)
    rules = {f"margin {m}": (lambda seen, m=m: choose_by_margin(from_original, pairwise, seen, size, m))
             for m in (0.0, 0.55, 0.6, 0.62, 0.65)}
    rules.update({f"mean, top {t}": (lambda seen, t=t: choose_by_mean(from_original, pairwise, seen, size, t))
                  for t in (160, 96, 64, 32)})
    rng = np.random.default_rng(1)
    halves = [rng.permutation(len(pool.ids)) for _ in range(args.splits)]
    correlation = float(np.mean([np.corrcoef(from_original[h[: len(h) // 2]].mean(0),
                                             from_original[h[len(h) // 2:]].mean(0))[0, 1] for h in halves]))
    everyone = list(range(len(pool.ids)))
    report = {"model": args.name, "people": len(pool.ids), "pool": pool.ids, "candidates": args.candidates,
              "splits": args.splits, "width": args.width, "shipped_bank_candidates": shipped,
              "shipped_on_pool": Judged.of(shipped, everyone, from_original, pairwise).__dict__,
              "spread": person_candidate_spread(from_original), "candidate_mean_split_correlation": round(correlation, 4),
              "rules": split_half(from_original, pairwise, shipped, rules, args.splits),
              "shipped_from_original": np.round(from_original[:, shipped], 4).tolist()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / "report.md").write_text(markdown(report))
    np.savez_compressed(args.out_dir / "distances.npz", from_original=from_original.astype(np.float32),
                        coefficients=coefficients)
    logger.info("wrote %s", args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
