"""Contact sheets: rows of labelled image tiles, written as one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

LABEL_BAR_PX = 28
GAP_PX = 6
BACKGROUND_BGR = (32, 32, 32)


def fit_tile(bgr: np.ndarray, tile_wh: tuple[int, int]) -> np.ndarray:
    """Resize keeping aspect and letterbox into `tile_wh`."""
    tile_w, tile_h = tile_wh
    height, width = bgr.shape[:2]
    scale = min(tile_w / width, tile_h / height)
    resized = cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    tile = np.full((tile_h, tile_w, 3), BACKGROUND_BGR, np.uint8)
    y0 = (tile_h - resized.shape[0]) // 2
    x0 = (tile_w - resized.shape[1]) // 2
    tile[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    return tile


def _labelled(tile: np.ndarray, label: str) -> np.ndarray:
    bar = np.full((LABEL_BAR_PX, tile.shape[1], 3), BACKGROUND_BGR, np.uint8)
    cv2.putText(bar, label, (6, LABEL_BAR_PX - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, tile])


def contact_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray]]], tile_wh: tuple[int, int]) -> np.ndarray:
    """Compose rows of (label, image) tiles into one BGR image."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    columns = max(len(row) for row in rows)
    rendered_rows = []
    for row in rows:
        tiles = [_labelled(fit_tile(image, tile_wh), label) for label, image in row]
        blank = np.full_like(tiles[0], BACKGROUND_BGR)
        tiles += [blank] * (columns - len(tiles))
        gap = np.full((tiles[0].shape[0], GAP_PX, 3), BACKGROUND_BGR, np.uint8)
        rendered_rows.append(np.hstack([part for tile in tiles for part in (tile, gap)][:-1]))
    gap_row = np.full((GAP_PX, rendered_rows[0].shape[1], 3), BACKGROUND_BGR, np.uint8)
    return np.vstack([part for row in rendered_rows for part in (row, gap_row)][:-1])


def write_contact_sheet(path: Path, rows: Sequence[Sequence[tuple[str, np.ndarray]]], tile_wh: tuple[int, int]) -> None:
    sheet = contact_sheet(rows, tile_wh)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"{path}: could not write the contact sheet")
