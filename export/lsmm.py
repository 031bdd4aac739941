"""The latent space manipulation module (LSMM, SDN paper section 6.2) for an exported SDN model.

    python -m export.lsmm all --models-dir models --name sdn-tiny      # fit + export + report

Steps (each also a subcommand):
  fit     collect the bottleneck over the fitting faces with many random passwords, PCA, a linear SVM
          per attribute, and save the degree-1 directions as NAME-lsmm.npz (export/lsmm_fit.py);
  export  re-export NAME-encoder.onnx (with its latent_shift input) and NAME-decoder.onnx from the
          manifest's torch weights, checking parity with torch, and record both files and the
          directions file with their sha256 in the manifest entry (files.lsmm_directions). Every other
          field of the entry (protection, model_card, ...) is kept: the weights are the same ones;
  report  the Table-4-style report on held-out faces (export/lsmm_report.py), into --report-dir, and
          the model card's "Latent space manipulation" section.

Fitting faces: `--data offline` (default) uses the training half of export/sdn_data.py's offline set
with attributes measured on the surrogates (smiling, mouth_open); `--data celeba --data-root DIR`
uses CelebA's training split and its labels Smiling and Mouth_Slightly_Open (as smiling, mouth_open).
The weights are read from the manifest (files.torch_weights, checked by sha256), so after new weights
are exported with export/export_onnx.py --manifest, `all` refits everything for them.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from export.export_onnx import TENSOR_LAYOUT, export_sdn
from export.lsmm_fit import FitSettings, fit_dataset_directions, fit_measured_directions
from export.lsmm_report import write_report
from export.sdn_data import NO_AUGMENT, CelebADataset, build_offline_faces, tensor_to_bgr
from streamd.nets.sdn import SdnGenerators, load_generators
from streamd.runtime.lsmm import DIRECTIONS_ROLE, load_directions, save_directions
from streamd.runtime.manifest import MANIFEST_NAME, load_manifest, manifest_file_entry, write_manifest_entry

logger = logging.getLogger("export.lsmm")

CELEBA_LABELS = {"smiling": "Smiling", "mouth_open": "Mouth_Slightly_Open"}


def directions_filename(name: str) -> str:
    return f"{name}-lsmm.npz"


def load_model_weights(models_dir: Path, name: str) -> tuple[SdnGenerators, str]:
    entry = load_manifest(models_dir).model(name)
    generators = load_generators(entry.verified_path("torch_weights"))
    return generators, entry.files["torch_weights"].sha256


def celeba_faces(root: Path, size: int, max_faces: int, seed: int) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    dataset = CelebADataset(root, size, tuple(CELEBA_LABELS.values()), split=0, augment=NO_AUGMENT, seed=seed)
    picks = np.random.default_rng(seed).permutation(len(dataset))[:max_faces]
    crops, labels = [], []
    for index in picks:
        sample = dataset[int(index)]
        crops.append(tensor_to_bgr(sample["image"]))
        labels.append(sample["attributes"].numpy())
    stacked = np.stack(labels)
    return crops, {name: stacked[:, column] for column, name in enumerate(CELEBA_LABELS)}


def fit(args: argparse.Namespace) -> Path:
    generators, weights_sha256 = load_model_weights(args.models_dir, args.name)
    settings = FitSettings(passwords_per_face=args.passwords_per_face, components=args.components, seed=args.seed)
    size = generators.config.resolution
    if args.data == "celeba":
        crops, labels = celeba_faces(args.data_root, size, args.max_faces, args.seed)
        names, directions, metadata = fit_dataset_directions(generators, crops, labels, settings)
    else:
        train, _ = build_offline_faces(size, generators.config.num_attributes)
        names, directions, metadata = fit_measured_directions(generators, [r.bgr for r in train], settings)
    metadata.update({"weights_sha256": weights_sha256, "data": args.data,
                     "passwords_per_face": settings.passwords_per_face, "svm_c": settings.svm_c,
                     "label_share": settings.label_share, "seed": settings.seed,
                     "degree_unit": "one standard deviation of the fitting bottlenecks along the direction"})
    config = generators.config
    path = args.models_dir / directions_filename(args.name)
    save_directions(path, names, directions.reshape(len(names), config.latent_channels, config.latent_size,
                                                    config.latent_size), metadata)
    logger.info("directions %s written to %s", ", ".join(names), path)
    return path


def export(args: argparse.Namespace) -> Path:
    """Re-export both graphs from the manifest's weights; record them and the directions file."""
    generators, _ = load_model_weights(args.models_dir, args.name)
    result = export_sdn(generators, args.models_dir, args.name)
    logger.info("encoder parity %.2e, decoder parity %.2e", result["encoder_max_abs_diff"], result["decoder_max_abs_diff"])
    manifest = json.loads((args.models_dir / MANIFEST_NAME).read_text())
    entry = manifest["models"][args.name]
    entry["tensor_layout"] = TENSOR_LAYOUT
    for role, filename in (("encoder_onnx", f"{args.name}-encoder.onnx"), ("decoder_onnx", f"{args.name}-decoder.onnx"),
                           (DIRECTIONS_ROLE, directions_filename(args.name))):
        entry["files"][role] = manifest_file_entry(args.models_dir, filename)
    path = write_manifest_entry(args.models_dir, args.name, entry)
    load_directions(args.models_dir, args.name)  # the recorded file loads and matches the weights
    return path


def report(args: argparse.Namespace) -> None:
    card = None
    if not args.no_card:
        card_name = load_manifest(args.models_dir).model(args.name).metadata.get("model_card")
        card = args.models_dir / str(card_name) if card_name else None
    write_report(args.models_dir, args.name, args.report_dir or args.models_dir, card, args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fit", "export", "report", "all"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default="sdn-tiny")
    parser.add_argument("--data", choices=("offline", "celeba"), default="offline")
    parser.add_argument("--data-root", type=Path, help="CelebA root (with --data celeba)")
    parser.add_argument("--max-faces", type=int, default=2000, help="CelebA faces to fit on")
    parser.add_argument("--passwords-per-face", type=int, default=FitSettings.passwords_per_face)
    parser.add_argument("--components", type=int, default=FitSettings.components, help="PCA components")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-dir", type=Path, help="where the report goes (default: the models folder)")
    parser.add_argument("--no-card", action="store_true", help="leave the model card alone")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.data == "celeba" and args.data_root is None:
        parser.error("--data celeba needs --data-root")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.command in ("fit", "all"):
        fit(args)
    if args.command in ("export", "all"):
        export(args)
    if args.command in ("report", "all"):
        report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
