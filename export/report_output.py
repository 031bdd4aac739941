"""How the export/ measurement scripts hand over a report: JSON on stdout, and to a file if asked."""

from __future__ import annotations

import json
from pathlib import Path


def emit_report(report: dict[str, object], out: Path | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
