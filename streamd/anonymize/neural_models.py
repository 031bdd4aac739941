"""How the neural anonymizers get their model: checked against the manifest's protection record, and
shared with every other camera of the process that runs the same model the same way
(`streamd.runtime.shared`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamd.config import NeuralModelConfig
from streamd.runtime.manifest import require_protective_model
from streamd.runtime.shared import SHARED_MODELS, ModelT

SharedModelKey = tuple[object, ...]


def shared_model_key(method: str, config: NeuralModelConfig) -> SharedModelKey:
    """What makes two cameras' models the same loaded model."""
    models_dir = None if config.models_dir is None else str(Path(config.models_dir).resolve())
    return method, models_dir, config.model, tuple(config.providers), config.intra_op_threads


def acquire_model(method: str, config: NeuralModelConfig, load: Callable[[], ModelT]) -> tuple[ModelT, SharedModelKey]:
    """The configured model (ModelError if it is missing, does not match the manifest, or was not shown
    to protect faces and the configuration does not allow that), and the key to `release_model` it by."""
    require_protective_model(config.models_dir, config.model, config.allow_unprotective_model)
    key = shared_model_key(method, config)
    return SHARED_MODELS.acquire(key, load), key


def release_model(key: SharedModelKey) -> None:
    SHARED_MODELS.release(key)
