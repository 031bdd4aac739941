import os

import numpy as np
import pytest

from streamd.anonymize.key_code import KEY_MATERIAL_BITS, key_code, key_from_bits


def flip_bit(key: bytes, bit: int) -> bytes:
    data = bytearray(key)
    data[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(data)


def test_code_is_deterministic_and_standard_normal():
    key = os.urandom(32)
    code = key_code(key, 4096 // 8)
    assert np.array_equal(code, key_code(key, 4096 // 8))
    many = np.concatenate([key_code(os.urandom(32), 512) for _ in range(20)])
    assert abs(float(many.mean())) < 0.05
    assert abs(float(many.std()) - 1.0) < 0.05


def test_one_flipped_key_bit_gives_an_uncorrelated_code():
    dimensions = 512
    bound = 4.0 / np.sqrt(dimensions)  # four standard errors of a correlation of independent codes
    rng = np.random.default_rng(7)
    key = os.urandom(32)
    code = key_code(key, dimensions)
    correlations = []
    for bit in rng.choice(256, size=32, replace=False):
        other = key_code(flip_bit(key, int(bit)), dimensions)
        correlations.append(float(np.corrcoef(code, other)[0, 1]))
    assert max(abs(value) for value in correlations) < bound
    # not a fixed code: the same test between a key and itself is a perfect correlation
    assert np.corrcoef(code, key_code(key, dimensions))[0, 1] > 0.999


def test_no_coordinate_follows_a_key_bit():
    """Probe each key bit on many keys: the code's response to one bit is noise in every coordinate."""
    dimensions = 128
    rng = np.random.default_rng(3)
    differences = []
    for _ in range(64):
        key = bytes(rng.integers(0, 256, 32, dtype=np.uint8))
        differences.append(key_code(flip_bit(key, 5), dimensions) - key_code(key, dimensions))
    mean_effect = np.abs(np.mean(differences, axis=0))
    # a bit that acted on a coordinate would move it the same way on every key (mean near +-2)
    assert float(mean_effect.max()) < 0.8


def test_short_keys_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        key_code(b"0123456789", 16)
    with pytest.raises(ValueError, match="dimensions"):
        key_code(os.urandom(32), 0)


def test_key_from_bits_packs_all_bits():
    bits = np.random.default_rng(1).integers(0, 2, KEY_MATERIAL_BITS).astype(np.float32)
    key = key_from_bits(bits)
    assert len(key) == 32
    assert np.array_equal(np.unpackbits(np.frombuffer(key, np.uint8)), bits.astype(np.uint8))
    with pytest.raises(ValueError):
        key_from_bits(np.array([0, 1, 2, 0, 0, 0, 0, 0]))


def test_a_track_key_reaches_the_code_through_the_track_secrets():
    """The anonymizer's path: the key ring's 256 password bits of a track, expanded into the code."""
    from streamd.anonymize.synthetic import code_from_track_secrets
    from streamd.reversible.keys.restore_keys import derive_password_bits

    class KeyRing:
        def __init__(self, keys: dict[int, bytes]) -> None:
            self.keys = keys

        def password_bits(self, track_id: int, n_bits: int) -> np.ndarray:
            return derive_password_bits(self.keys[track_id], n_bits)

    key = os.urandom(32)
    ring = KeyRing({1: key, 2: flip_bit(key, 255)})
    first = code_from_track_secrets(ring, 1, 256)
    assert np.array_equal(first, code_from_track_secrets(ring, 1, 256))
    assert abs(float(np.corrcoef(first, code_from_track_secrets(ring, 2, 256))[0, 1])) < 4.0 / 16
