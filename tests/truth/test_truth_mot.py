"""MOTChallenge ground truth and the conditions sidecar: round trip, tolerated variants, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.errors import StreamdError, TruthError
from streamd.truth.mot import GtBox, read_conditions, read_gt, write_conditions, write_gt


def test_round_trip_keeps_boxes_in_mot_order(tmp_path: Path) -> None:
    boxes = [GtBox(2, 1, 10.5, 20.25, 30.0, 40.0, 1.0, 1, 0.75), GtBox(1, 7, 0.0, 0.0, 16.0, 18.0, 0.0, 1, 1.0)]
    path = tmp_path / "gt.txt"
    write_gt(path, boxes)
    assert path.read_text().splitlines()[0].startswith("1,7,")
    assert read_gt(path) == sorted(boxes, key=lambda box: (box.frame, box.id))


def test_short_and_long_lines_as_other_tools_write_them(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,20,30,40\n\n2,1,11,21,30,40,0,1,0.5,-1,-1,-1\n3, 2, 5, 5, 8, 9, 1\n")
    boxes = read_gt(path)
    assert [(b.frame, b.id) for b in boxes] == [(1, 1), (2, 1), (3, 2)]
    assert boxes[0].conf == 1.0 and boxes[0].visibility == 1.0 and not boxes[0].ignore
    assert boxes[1].ignore and boxes[1].visibility == 0.5
    assert boxes[2].xyxy == (5.0, 5.0, 13.0, 14.0)


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("3,1,10,20,abc,40,1,1,1", "bb_width is 'abc', not a number"),
        ("3,1,10,20", "4 columns, need at least 6 (frame, id, bb_left, bb_top, bb_width, bb_height)"),
        ("0,1,10,20,30,40", "frame is 0; MOT frames count from 1"),
        ("3,1,10,20,-5,40", "box size -5x40 is not positive"),
        ("3,1.5,10,20,30,40", "id is '1.5', not a whole number"),
        ("3,1,10,20,30,40,1,1,1.7", "visibility is 1.7, outside 0..1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, expected: str) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(f"1,1,10,20,30,40,1,1,1\n2,1,10,20,30,40,1,1,1\n{bad_line}\n")
    with pytest.raises(TruthError) as caught:
        read_gt(path)
    message = str(caught.value)
    assert message == f"{path} line 3: {expected}"
    assert "\n" not in message
    assert isinstance(caught.value, StreamdError)


def test_missing_file_is_a_truth_error(tmp_path: Path) -> None:
    with pytest.raises(TruthError, match="cannot read ground truth"):
        read_gt(tmp_path / "absent.txt")


def test_conditions_round_trip_and_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "conditions.csv"
    write_conditions(path, {(2, 1): {"small", "dark"}, (1, 3): {"clear"}})
    assert path.read_text().splitlines() == ["frame,id,tags", "1,3,clear", "2,1,dark|small"]
    assert read_conditions(path) == {(1, 3): frozenset({"clear"}), (2, 1): frozenset({"dark", "small"})}
    path.write_text("frame,id,tags\n1,3,clear\n2,x,dark\n")
    with pytest.raises(TruthError, match=r"line 3: id is 'x', not a number"):
        read_conditions(path)
