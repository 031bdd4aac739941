"""The live view's and health's config keys: defaults, bounds, and the YAML line of a mistake."""

from __future__ import annotations

import pytest

from streamd.config import HealthConfig, LiveOutputConfig, parse_config
from streamd.errors import ConfigError

CAMERA = "cameras:\n  - id: a\n    source: {type: file, path: a.mp4}\n"


def test_live_and_health_defaults() -> None:
    config = parse_config(CAMERA.replace("a.mp4}\n", "a.mp4}\n    outputs: {live: {}}\n"))
    assert config.cameras[0].outputs.live == LiveOutputConfig()
    live = config.cameras[0].outputs.live
    assert live.mjpeg and live.hls and live.max_width == 960 and live.hls_segment_s == 1.0
    assert config.health == HealthConfig() and config.health.max_drop_share == 0.05
    assert parse_config(CAMERA).cameras[0].outputs.live is None, "no live view unless asked for"


@pytest.mark.parametrize("yaml_text, expected", [
    ("    outputs: {live: {hls_segment_s: 0.1}}\n", r"<config>:4: cameras\.0\.outputs\.live\.hls_segment_s"),
    ("    outputs: {live: {mjpg: true}}\n", r"<config>:4: cameras\.0\.outputs\.live\.mjpg: unknown key"),
    ("    outputs: {live: {jpeg_quality: 5}}\n", r"jpeg_quality"),
])
def test_live_mistakes_name_the_line(yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(CAMERA + yaml_text)


def test_health_bounds() -> None:
    with pytest.raises(ConfigError, match=r"<config>:1: health\.max_drop_share"):
        parse_config("health: {max_drop_share: 1.5}\n" + CAMERA)
    with pytest.raises(ConfigError, match=r"health\.window_s"):
        parse_config("health: {window_s: 0}\n" + CAMERA)


def test_a_live_view_needs_the_http_server() -> None:
    with pytest.raises(ConfigError, match="live view.*metrics.enabled: true"):
        parse_config("metrics: {enabled: false}\n" + CAMERA + "    outputs: {live: {}}\n")
