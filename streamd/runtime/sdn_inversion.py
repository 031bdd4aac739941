"""SDN restore by inverting the encoder: the decoder's estimate, refined until it re-encodes to the surrogate.

Whoever holds a track's key holds its password, and the encoder ships with the model, so a surrogate
s = En(x, password, attributes, shift) can be inverted by the fixed-point iteration

    x_0 = De(s, password, attributes)
    x_{k+1} = clip(x_k + step * (s - En(x_k, password, attributes, shift)), -1, 1)

which converges where the encoder's residual changes slowly with its input image (the encoder adds a
residual to its input, so En(x) - x varies much less than x). Each iteration is one encoder run.
It serves unshifted surrogates (shift None) as well as those made with a latent manipulation (the
decoder never saw shifted surrogates). With a wrong password the iteration converges to a face that
re-encodes to s under that password, not to the original: the key still decides what comes back
(measured numbers in models/sdn-tiny.md).
"""

from __future__ import annotations

import numpy as np

from streamd.runtime.sdn import SdnCodec, crops_bgr_to_nchw, nchw_to_crops_bgr

DEFAULT_ITERATIONS = 8
DEFAULT_STEP = 1.0


def invert_encoder(codec: SdnCodec, surrogates: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray,
                   latent_shift: np.ndarray | None, iterations: int = DEFAULT_ITERATIONS,
                   step: float = DEFAULT_STEP) -> np.ndarray:
    """Float (N, 3, S, S) surrogates in [-1, 1] -> the faces whose shifted surrogates they are."""
    if iterations < 0 or not 0.0 < step <= 2.0:
        raise ValueError(f"iterations must be >= 0 and step in (0, 2], got {iterations} and {step}")
    faces = codec.decode(surrogates, password_bits, attributes)
    for _ in range(iterations):
        residual = surrogates - codec.encode(faces, password_bits, attributes, latent_shift)
        faces = np.clip(faces + step * residual, -1.0, 1.0)
    return faces


def restore_by_inversion(codec: SdnCodec, surrogates_bgr: np.ndarray, password_bits: np.ndarray, attributes: np.ndarray,
                    latent_shift: np.ndarray | None, iterations: int = DEFAULT_ITERATIONS,
                    step: float = DEFAULT_STEP) -> np.ndarray:
    """`invert_encoder` on uint8 BGR crops (N, S, S, 3); returns restored crops the same way."""
    codec.check_inputs(surrogates_bgr, password_bits, attributes)
    if surrogates_bgr.shape[0] == 0:
        return surrogates_bgr.copy()
    faces = invert_encoder(codec, crops_bgr_to_nchw(surrogates_bgr), password_bits, attributes, latent_shift,
                           iterations, step)
    return nchw_to_crops_bgr(faces)
