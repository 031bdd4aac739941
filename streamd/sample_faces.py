"""Face photos that installed packages ship, for the demo clip and the tests (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

SAMPLE_SOURCES: dict[str, dict[str, str]] = {
    "astronaut": {
        "package": "scikit-image",
        "file": "skimage/data/astronaut.png",
        "content": "Eileen Collins, NASA astronaut, one face, 512x512",
        "licence": "NASA photograph; no known copyright restrictions, public domain (per scikit-image)",
    },
    "group_photo": {
        "package": "insightface",
        "file": "insightface/data/images/t1.jpg",
        "content": "group photo with 6 faces, 1280x886",
        "licence": "sample image shipped with insightface (library code MIT); no separate image licence stated",
    },
    "tom_hanks": {
        "package": "insightface",
        "file": "insightface/data/images/Tom_Hanks_54745.png",
        "content": "one aligned face crop, 112x112",
        "licence": "sample image shipped with insightface (library code MIT); no separate image licence stated",
    },
}


def sample_path(name: str) -> Path:
    """Where the named sample lies inside its installed package; FileNotFoundError when absent."""
    source = SAMPLE_SOURCES[name]
    top_module, _, relative = source["file"].partition("/")
    spec = importlib.util.find_spec(top_module)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"sample image {name!r} needs the {source['package']!r} package, which is not installed"
        )
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"sample image {name!r} is missing from the {source['package']!r} package: expected {path} "
            f"(reinstall {source['package']})"
        )
    return path


def _read_bgr(name: str) -> np.ndarray:
    path = sample_path(name)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"sample image {name!r} at {path} cannot be decoded")
    return bgr


def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut photo (one face), 512x512 BGR uint8."""
    return _read_bgr("astronaut")


def group_photo_bgr() -> np.ndarray:
    """insightface's t1.jpg group photo (six faces), BGR uint8."""
    return _read_bgr("group_photo")


def tom_hanks_bgr() -> np.ndarray:
    """insightface's aligned 112x112 face crop of Tom Hanks, BGR uint8."""
    return _read_bgr("tom_hanks")
