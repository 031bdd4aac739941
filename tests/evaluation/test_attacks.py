"""The attack suite against a deliberately weak keyed model: 8 password bits, each adding its own
fixed noise pattern to the face. Exported to ONNX and run through onnxruntime like a shipped model,
the per-bit probe and the searches after it must find the password and give the face back to dlib."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("dlib")

from streamd.align import similarity_transform  # noqa: E402
from streamd.evaluation.attacks import ATTACKS, AttackBudget, attack_face, summarize_attacks  # noqa: E402
from streamd.runtime.sdn import crops_bgr_to_nchw, nchw_to_crops_bgr  # noqa: E402

SIZE = 64
BITS = 8
STRENGTH = 0.3


class WeakEncoder(torch.nn.Module):
    def __init__(self, patterns: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("patterns", patterns)

    def forward(self, crop: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return crop + STRENGTH * ((2 * code - 1) @ self.patterns).reshape(-1, 3, SIZE, SIZE)


class WeakDecoder(WeakEncoder):
    def forward(self, surrogate: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return surrogate - STRENGTH * ((2 * code - 1) @ self.patterns).reshape(-1, 3, SIZE, SIZE)


class WeakKeyedModel:
    """KeyedModel over the two exported graphs (onnxruntime)."""

    name = "weak"
    crop_size = SIZE
    code_size = BITS
    code_kind = "bits"

    def __init__(self, folder: Path) -> None:
        import onnxruntime

        patterns = torch.from_numpy(np.random.default_rng(5).choice([-1.0, 1.0], (BITS, 3 * SIZE * SIZE)).astype(np.float32))
        self.sessions = {}
        for role, graph in (("encoder", WeakEncoder(patterns)), ("decoder", WeakDecoder(patterns))):
            path = folder / f"weak-{role}.onnx"
            torch.onnx.export(graph, (torch.zeros(1, 3, SIZE, SIZE), torch.zeros(1, BITS)), str(path),
                              input_names=["image", "code"], output_names=["out"],
                              dynamic_axes={"image": {0: "n"}, "code": {0: "n"}, "out": {0: "n"}}, dynamo=False)
            self.sessions[role] = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def crop_matrix(self, kps5: np.ndarray) -> np.ndarray:
        return similarity_transform(kps5, SIZE)

    def code_for_key(self, key: bytes) -> np.ndarray:
        from streamd.reversible.keys.restore_keys import derive_password_bits

        return derive_password_bits(key, BITS)

    def _run(self, role: str, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self.sessions[role].run(["out"], {"image": images.astype(np.float32), "code": codes.astype(np.float32)})[0]

    def encode(self, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self._run("encoder", images, codes)

    def decode(self, surrogates: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self._run("decoder", surrogates, codes)


def test_the_attacks_recover_the_password_of_a_weak_model(tmp_path: Path) -> None:
    from export.sdn_data import detect_faces_centerface
    from streamd import sample_faces
    from streamd.evaluation.identity import DlibIdentityJudge

    model = WeakKeyedModel(tmp_path)
    photo = sample_faces.astronaut_bgr()
    kps5 = detect_faces_centerface(photo)[0]
    crop = cv2.warpAffine(photo, model.crop_matrix(kps5), (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    judge = DlibIdentityJudge()
    side = 200
    box = np.array([0.12, 0.18, 0.88, 0.98]) * side

    def embed(image: np.ndarray) -> np.ndarray:
        bgr = nchw_to_crops_bgr(image[None])[0]
        return judge.embed(cv2.resize(bgr, (side, side), interpolation=cv2.INTER_CUBIC), box)

    original = crops_bgr_to_nchw(crop[None])[0]
    reference = embed(original)

    def distance(_original: np.ndarray, guess: np.ndarray) -> float:
        return float(np.linalg.norm(reference - embed(guess)))

    budget = AttackBudget(local_pairs=8, hill_steps=20, gradient_steps=40)
    results = [attack_face(model, "astronaut", original, distance, budget, np.random.default_rng(seed))
               for seed in range(2)]
    for result in results:
        # the noise of 8 bits hides the face from dlib, and no attack is told the key
        assert result.distances["surrogate_itself"] >= 0.6
        assert result.distances["right_key"] < 0.6
        assert result.code_errors["per_bit_probe"] == 0
        assert result.code_errors["hill_climb"] == 0
        assert result.code_errors["ignore_password"] == BITS / 2  # every bit off by 0.5
    summary = summarize_attacks(results, 0.6)
    assert summary["recovered"]["per_bit_probe"] == 1.0
    assert summary["recovered_by_any_attack"] == 1.0
    assert set(ATTACKS) <= set(summary["recovered"])
