"""Choosing the faces for the before/after picture of misses."""

from __future__ import annotations

from pathlib import Path

from export.misses_before_after import pick_instances

HEADER = "run,clip,frame,id,width_px,bucket,visibility,tags,ssim,missed\n"


def test_picks_faces_missed_before_and_masked_after_widest_first_one_per_track(tmp_path: Path) -> None:
    rows = [
        ("old", "c", 1, 1, 30, 1), ("new", "c", 1, 1, 30, 0),   # fixed
        ("old", "c", 6, 1, 40, 1), ("new", "c", 6, 1, 40, 0),   # fixed, same track, wider
        ("old", "c", 1, 2, 90, 1), ("new", "c", 1, 2, 90, 1),   # missed by both
        ("old", "c", 1, 3, 20, 0), ("new", "c", 1, 3, 20, 1),   # a regression, not shown
        ("old", "d", 1, 1, 25, 1), ("new", "d", 1, 1, 25, 0),   # fixed, another clip
    ]
    csv_path = tmp_path / "truth-instances.csv"
    csv_path.write_text(HEADER + "".join(f"{run},{clip},{frame},{tid},{width},b,1,clear,0.9,{missed}\n"
                                         for run, clip, frame, tid, width, missed in rows))
    chosen = pick_instances(csv_path, "old", "new", count=5)
    assert [(row["clip"], row["frame"], row["id"]) for row in chosen] == [("c", "6", "1"), ("d", "1", "1")]
    assert len(pick_instances(csv_path, "old", "new", count=1)) == 1
