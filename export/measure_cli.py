"""What the export/ measurement scripts share on the command line: the common arguments, and how a
report is handed over (JSON on stdout, and to a file if asked)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def measurement_parser(description: str | None, default_model: str) -> argparse.ArgumentParser:
    """A parser with the arguments every held-out-face measurement takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--name", default=default_model)
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="extra photos; every face found is held out")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality the outputs are stored at")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=50, help="latency runs per measurement")
    parser.add_argument("--out", type=Path, help="write the report as JSON")
    return parser


def emit_report(report: dict[str, object], out: Path | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
