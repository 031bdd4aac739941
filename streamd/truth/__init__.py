"""Ground truth and a hard benchmark for missed faces: MOTChallenge ground truth (`mot`), generated
hard clips (`hard_clip`), miss scoring (`misses`), and `streamd eval --truth` (`runner`, `report`).
See docs/benchmark.md."""
