"""The live page at `/` and the files it loads, shipped inside the package (nothing from the internet)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


#: URL path -> (file under streamd/live/static, content type)
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/live/hls.light.min.js": ("hls.light.min.js", "text/javascript; charset=utf-8"),
    "/live/hls.js-LICENSE": ("hls.js-LICENSE", "text/plain; charset=utf-8"),
}


@cache
def static_file(url_path: str) -> StaticFile | None:
    """The shipped file served at `url_path`, or None."""
    entry = STATIC_FILES.get(url_path)
    if entry is None:
        return None
    name, content_type = entry
    body = resources.files("streamd.live").joinpath("static", name).read_bytes()
    return StaticFile(body, content_type)
