"""The key code: a track key expanded by HKDF-SHA256 into a high-dimensional Gaussian vector.

A keyed surrogate model is conditioned on this code, never on raw key bits. Every coordinate depends
on every bit of the key through HKDF, so a one-bit change of the key gives an unrelated code and no
coordinate can be probed for one bit of the key: the search space is the key itself (at least 128
bits, 256 for a track key).

The code's coordinates are independent standard normal values (Box-Muller on 32-bit uniforms from
the HKDF output, label "streamd/sdn-key-code/v1").
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_CODE_LABEL = b"streamd/sdn-key-code/v1"
#: A key shorter than this cannot stand against a search.
MIN_KEY_BYTES = 16
HKDF_MAX_BYTES = 255 * 32
BYTES_PER_COORDINATE = 8  # two 32-bit uniforms per Box-Muller draw
MAX_CODE_DIMENSIONS = HKDF_MAX_BYTES // BYTES_PER_COORDINATE
#: The password bits an anonymizer draws from its track secrets to expand into a code (one HKDF block
#: of the track key: all 256 bits of it carry over).
KEY_MATERIAL_BITS = 256


def key_code(key: bytes, dimensions: int) -> np.ndarray:
    """(dimensions,) float32 standard normal values derived from `key` (at least 16 bytes)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a key code needs a key of at least {MIN_KEY_BYTES} bytes")
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_CODE_DIMENSIONS:
        raise ValueError(f"dimensions must be an int in 1..{MAX_CODE_DIMENSIONS}, got {dimensions!r}")
    derived = HKDF(algorithm=hashes.SHA256(), length=dimensions * BYTES_PER_COORDINATE, salt=None,
                   info=KEY_CODE_LABEL).derive(bytes(key))
    words = np.frombuffer(derived, dtype=">u4").astype(np.float64).reshape(dimensions, 2)
    uniforms = (words + 0.5) / 2.0**32  # in (0, 1), never 0
    radius = np.sqrt(-2.0 * np.log(uniforms[:, 0]))
    return (radius * np.cos(2.0 * np.pi * uniforms[:, 1])).astype(np.float32)


def key_from_bits(bits: np.ndarray) -> bytes:
    """Key bytes from 0/1 values (what a track's secrets hand out), most significant bit first."""
    values = np.asarray(bits)
    if values.ndim != 1 or values.size % 8 or not np.isin(values, (0, 1)).all():
        raise ValueError("key bits must be a 1-D array of 0 and 1 whose length is a multiple of 8")
    return np.packbits(values.astype(np.uint8)).tobytes()
