"""What a one-shot run reads and writes: the default output name, folder walks, refusing to overwrite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamd.errors import SinkError, SourceError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = (".mkv", ".mp4")
ANONYMIZED_TAG = "anonymized"


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def default_output(input_path: Path, restorable: bool = False) -> Path:
    """`NAME.anonymized.EXT` beside the input (`NAME.anonymized/` for a folder).

    A video whose container streamd cannot write (.avi, .mov, ...) gets `.mkv`, as does a restorable one.
    """
    if input_path.is_dir():
        return input_path.with_name(f"{input_path.name}.{ANONYMIZED_TAG}")
    suffix = input_path.suffix
    if not is_image_path(input_path) and (restorable or suffix.lower() not in VIDEO_SUFFIXES):
        suffix = ".mkv"
    return input_path.with_name(f"{input_path.stem}.{ANONYMIZED_TAG}{suffix}")


def check_output(input_path: Path, output_path: Path, force: bool) -> None:
    """Refuse an output that exists (without `force`), that is the input, or that streamd cannot write."""
    if input_path.resolve() == output_path.resolve():
        raise SinkError(f"{output_path}: output must not overwrite the input")
    if output_path.exists() and not force:
        kind = "folder" if output_path.is_dir() else "file"
        raise SinkError(f"{output_path}: the output {kind} already exists; pass --force to overwrite it")
    if input_path.is_dir() or is_image_path(input_path):
        return
    if output_path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SinkError(
            f"{output_path}: cannot write a {output_path.suffix or 'suffix-less'} video; "
            "the output must end in .mkv or .mp4"
        )


@dataclass
class ImagePlan:
    """The (input, output) image pairs of a run, and the subfolders it did not search."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    skipped_folders: list[Path] = field(default_factory=list)


def _images_in(folder: Path, recursive: bool, exclude: Path) -> ImagePlan:
    plan = ImagePlan()
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if entry.resolve() == exclude:
                continue
            if recursive:
                sub = _images_in(entry, True, exclude)
                plan.pairs.extend(sub.pairs)
            else:
                plan.skipped_folders.append(entry)
        elif entry.is_file() and is_image_path(entry):
            plan.pairs.append((entry, entry))
    return plan


def plan_image_pairs(input_path: Path, output_path: Path, recursive: bool = False) -> ImagePlan:
    """The images to anonymize and where each goes; a folder's images keep their names (and, with
    `recursive`, their subfolders). Creates the output folders."""
    if not input_path.is_dir():
        if not is_image_path(output_path):
            raise SinkError(
                f"{output_path}: output of an image must be an image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return ImagePlan(pairs=[(input_path, output_path)])
    if output_path.exists() and not output_path.is_dir():
        raise SinkError(f"{output_path}: exists and is not a folder")
    if output_path.resolve() == input_path.resolve():
        raise SinkError(f"{output_path}: output folder must differ from the input folder")
    found = _images_in(input_path, recursive, exclude=output_path.resolve())
    if not found.pairs:
        where = "this folder or its subfolders" if recursive else "this folder"
        hint = " (it has subfolders: pass --recursive)" if found.skipped_folders else ""
        raise SourceError(f"{input_path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {where}{hint}")
    plan = ImagePlan(skipped_folders=found.skipped_folders)
    for image, _ in found.pairs:
        target = output_path / image.relative_to(input_path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{target.parent}: cannot create output folder: {exc.strerror}") from None
        plan.pairs.append((image, target))
    return plan
