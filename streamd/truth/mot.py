"""Ground truth in the MOTChallenge `gt.txt` convention, and its per-instance condition tags.

`gt.txt` holds one CSV line per face instance:
`frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility` with `frame` counted from 1
and the box in pixels of the displayed (upright) frame. The first six columns are required; `conf`
defaults to 1, `class` to 1 and `visibility` to 1, and columns past the ninth are ignored (MOT16's
3-D world coordinates, CVAT's extras). A line with `conf` 0 marks a region to ignore, as in MOT.

`conditions.csv` (written beside `gt.txt` by the benchmark generator) tags instances:
`frame,id,tags` with tags separated by `|`, for example `12,3,small|dark`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streamd.errors import TruthError

GT_COLUMNS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "conf", "class", "visibility")
REQUIRED_COLUMNS = 6
TAG_SEPARATOR = "|"


@dataclass(frozen=True)
class GtBox:
    """One face instance in one frame; `frame` is 1-based, the box is left, top, width, height in pixels."""

    frame: int
    id: int
    left: float
    top: float
    width: float
    height: float
    conf: float = 1.0
    cls: int = 1
    visibility: float = 1.0

    @property
    def ignore(self) -> bool:
        """MOT convention: a zero confidence marks a region that is neither scored nor a false positive."""
        return self.conf == 0

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.left + self.width, self.top + self.height)


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TruthError(f"{where}: {column} is {text.strip()!r}, not a number") from None
    if not math.isfinite(value):
        raise TruthError(f"{where}: {column} is {text.strip()!r}, not a finite number")
    return value


def _integer(text: str, column: str, where: str) -> int:
    value = _number(text, column, where)
    if value != int(value):
        raise TruthError(f"{where}: {column} is {text.strip()!r}, not a whole number")
    return int(value)


def parse_gt_line(fields: list[str], where: str) -> GtBox:
    """One split CSV line; `where` ("FILE line N") starts every error message."""
    if len(fields) < REQUIRED_COLUMNS:
        raise TruthError(f"{where}: {len(fields)} columns, need at least {REQUIRED_COLUMNS} "
                         f"({', '.join(GT_COLUMNS[:REQUIRED_COLUMNS])})")
    frame = _integer(fields[0], "frame", where)
    if frame < 1:
        raise TruthError(f"{where}: frame is {frame}; MOT frames count from 1")
    track = _integer(fields[1], "id", where)
    left, top, width, height = (_number(fields[i], GT_COLUMNS[i], where) for i in range(2, 6))
    if width <= 0 or height <= 0:
        raise TruthError(f"{where}: box size {width:g}x{height:g} is not positive")
    conf = _number(fields[6], "conf", where) if len(fields) > 6 and fields[6].strip() else 1.0
    cls = _integer(fields[7], "class", where) if len(fields) > 7 and fields[7].strip() else 1
    visibility = _number(fields[8], "visibility", where) if len(fields) > 8 and fields[8].strip() else 1.0
    if not 0.0 <= visibility <= 1.0:
        raise TruthError(f"{where}: visibility is {visibility:g}, outside 0..1")
    return GtBox(frame, track, left, top, width, height, conf, cls, visibility)


def read_gt(path: Path | str) -> list[GtBox]:
    """Every instance of a gt.txt file, in file order. Blank lines are skipped; a bad line raises TruthError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TruthError(f"{path}: cannot read ground truth: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TruthError(f"{path}: ground truth is not text") from None
    boxes: list[GtBox] = []
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not field.strip() for field in fields):
            continue
        boxes.append(parse_gt_line(fields, f"{path} line {number}"))
    return boxes


def format_gt_line(box: GtBox) -> str:
    return (f"{box.frame},{box.id},{box.left:.2f},{box.top:.2f},{box.width:.2f},{box.height:.2f},"
            f"{box.conf:g},{box.cls},{box.visibility:.3f}")


def write_gt(path: Path | str, boxes: Iterable[GtBox]) -> None:
    """Write `boxes` sorted by frame, then id (MOT order)."""
    ordered = sorted(boxes, key=lambda box: (box.frame, box.id))
    Path(path).write_text("".join(format_gt_line(box) + "\n" for box in ordered))


def read_conditions(path: Path | str) -> dict[tuple[int, int], frozenset[str]]:
    """(frame, id) -> condition tags, from a `frame,id,tags` file (header line optional)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TruthError(f"{path}: cannot read conditions: {exc.strerror}") from None
    tags: dict[tuple[int, int], frozenset[str]] = {}
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not field.strip() for field in fields):
            continue
        if number == 1 and fields[0].strip().lower() == "frame":
            continue
        where = f"{path} line {number}"
        if len(fields) != 3:
            raise TruthError(f"{where}: {len(fields)} columns, need 3 (frame, id, tags)")
        key = (_integer(fields[0], "frame", where), _integer(fields[1], "id", where))
        tags[key] = frozenset(tag.strip() for tag in fields[2].split(TAG_SEPARATOR) if tag.strip())
    return tags


def write_conditions(path: Path | str, tags: dict[tuple[int, int], Iterable[str]]) -> None:
    lines = ["frame,id,tags\n"]
    for (frame, track), names in sorted(tags.items()):
        lines.append(f"{frame},{track},{TAG_SEPARATOR.join(sorted(names))}\n")
    Path(path).write_text("".join(lines))
