"""Canonical JSON: one byte string per value, used wherever JSON is authenticated (AEAD associated data).

Keys are sorted, there is no insignificant whitespace and non-ASCII text is escaped, so two processes
that build the same dict get the same bytes.
"""

from __future__ import annotations

import json


def canonical_json_bytes(value: object) -> bytes:
    """Serialize `value` (dicts, lists, str, int, bool, None) to canonical JSON bytes.

    Floats are refused: their text form is not stable enough to authenticate. Quantize them to
    integers first.
    """
    _refuse_floats(value)
    return checked_canonical_json_bytes(value)


def checked_canonical_json_bytes(value: object) -> bytes:
    """`canonical_json_bytes` of a value whose type already guarantees it holds no floats (a validated
    binding, say), without walking it again."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def _refuse_floats(value: object) -> None:
    if isinstance(value, float):
        raise TypeError(f"canonical JSON takes no floats (got {value!r}); quantize to an integer first")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_floats(item)
