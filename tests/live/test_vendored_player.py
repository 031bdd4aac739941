"""The HLS player the live page serves is the published hls.js build its README names, unmodified."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import streamd.live

STATIC = Path(streamd.live.__file__).parent / "static"


def test_served_player_is_the_published_hls_js_build() -> None:
    provenance = (STATIC / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"sha256 of `hls\.light\.min\.js`: `([0-9a-f]{64})`", provenance)
    assert stated, "the static README must state the player's sha256"
    digest = hashlib.sha256((STATIC / "hls.light.min.js").read_bytes()).hexdigest()
    assert digest == stated.group(1)
    assert "Apache License" in (STATIC / "hls.js-LICENSE").read_text(encoding="utf-8")
