"""Build an `sdn-synthetic` model: a face space from donor faces, exported as three ONNX graphs.

    python -m export.build_synthetic_identity --out-dir models --name sdn-synth128 --manifest

Donors: the 100 faces of `skimage.data.lfw_subset()` (25x25 grey, unlabelled; in scikit-image, no
download) and their mirror images. Each is upscaled, its five landmarks found by CenterFace, and
aligned into the model's crop geometry at `basis_resolution`. The face space is their mean plus the
first `components` principal components. The key code (128 values) is mapped onto the components by
a fixed random matrix with orthonormal rows (seeded), so every component depends on every code value.

Nothing is trained; the parameters of `SyntheticIdentityConfig` (components 16, amplitude 2.5, light
sigma 16 px) were chosen on two tuning faces only (skimage's astronaut and insightface's
Tom_Hanks_54745.png), never on the evaluation faces (model card). Writes NAME-surrogate.onnx,
NAME-reveal.onnx, NAME-identity.onnx and NAME-face-space.npz, checks each graph in onnxruntime
against torch, and with --manifest records them in OUT_DIR/manifest.json (no protection record:
that comes from export/measure_sdn.py --record-protection).
"""

from __future__ import annotations

import argparse
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
PROJECTION_SEED = 20261130
LFW_FACES = 100
DONOR_SOURCE = "skimage.data.lfw_subset() faces 0-99 and their mirror images"
#: Which faces went where; export/measure_sdn.py never evaluates a face listed in not_for_evaluation.
DATA_ROLES = {
    "training": "face space from " + DONOR_SOURCE + " (grey, 25x25; no evaluation photo)",
    "tuning": "skimage astronaut (astronaut.png) and insightface Tom_Hanks_54745.png: components, amplitude, "
              "light sigma",
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
    rng = np.random.default_rng(PROJECTION_SEED)
    q, _ = np.linalg.qr(rng.standard_normal((config.code_dimensions, config.components)))
    explained = float((singular_values[:config.components] ** 2).sum() / (singular_values ** 2).sum())
    logger.info("face space: %d donors, %d components, %.1f%% of their variance", len(donors), config.components,
                100 * explained)
    return {"mean_face": mean.astype(np.float32), "components": vt[:config.components].astype(np.float32),
            "component_std": std.astype(np.float32), "projection": q.T.astype(np.float32),
            "donors": np.array(len(donors)), "explained_variance": np.array(explained)}


def model_from_space(config: SyntheticIdentityConfig, space: dict[str, np.ndarray]) -> SyntheticIdentity:
    return SyntheticIdentity(config, *(torch.from_numpy(np.asarray(space[name])) for name in
                                       ("mean_face", "components", "component_std", "projection")))


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
    parser.add_argument("--shading-sigma", type=float, default=16.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    config = SyntheticIdentityConfig(resolution=args.resolution, components=args.components,
                                     amplitude=args.amplitude, shading_sigma=args.shading_sigma * args.resolution / 128)
    space = build_face_space(config)
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
            "key_code": "HKDF-SHA256 of the track key, label streamd/sdn-key-code/v1, Gaussian (Box-Muller)",
            "files": files, "model_card": f"{args.name}.md", "opset": OPSET_VERSION,
            "built_by": "export/build_synthetic_identity.py",
            "data_roles": DATA_ROLES,
            "tensor_layout": "NCHW float32 RGB in [-1, 1]; key_code float32 (N, code_dimensions)",
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
