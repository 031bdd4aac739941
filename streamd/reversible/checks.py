"""Checks of a configuration's reversible cameras that need the key files (`streamd validate-config`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from streamd.config import CameraConfig
from streamd.errors import ConfigError
from streamd.reversible.keys.restore_keys import CREDENTIAL_PREFIX, CREDENTIALS_DIRECTORY_ENV, KeyFileError, load_public_keys


def check_reversible_cameras(cameras: Sequence[CameraConfig]) -> None:
    """Load and test-wrap every restore recipient of every reversible camera; ConfigError names the camera
    and the key. Recipients given as `credential:NAME` are checked only where systemd provides them."""
    for camera in cameras:
        if camera.reversible is None:
            continue
        refs = [ref for ref in camera.reversible.recipients
                if not ref.startswith(CREDENTIAL_PREFIX) or os.environ.get(CREDENTIALS_DIRECTORY_ENV)]
        try:
            load_public_keys(refs)
        except KeyFileError as exc:
            raise ConfigError(f"camera {camera.id}: reversible.recipients: {exc}") from None
