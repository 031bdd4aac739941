"""`streamd status`: a running service's cameras and health, read from its HTTP server alone.

The address comes from `--url`, or from the `metrics.listen` of a config file. A config file that
no longer validates (an edit in progress) still gives its address when its `metrics` section is
fine, so status keeps working while the file is being fixed.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from streamd.config import MetricsConfig, load_config
from streamd.errors import ConfigError, StreamdError
from streamd.service.metrics import camera_status_rows, fetch_metrics, format_status_table, parse_metrics

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:9108"


def base_url(address: str) -> str:
    """`http://HOST:PORT` from an address given as HOST:PORT, a base URL or the /metrics URL."""
    text = address.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StreamdError(f"{address!r} is not an HTTP address like http://127.0.0.1:9108")
    path = parts.path.rstrip("/")
    if path.endswith("/metrics"):
        path = path[: -len("/metrics")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def address_from_config(path: Path) -> str:
    """`http://` + the config's metrics.listen; only the metrics section has to be valid."""
    try:
        return "http://" + load_config(path).metrics.listen
    except ConfigError as full_error:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            raise StreamdError(f"{full_error}; cannot read the metrics address from it: pass --url "
                               "http://HOST:PORT") from None
        section = data.get("metrics", {}) if isinstance(data, dict) else {}
        try:
            listen = MetricsConfig.model_validate(section or {}).listen
        except ValidationError:
            raise StreamdError(f"{full_error}; its metrics section is not valid either: pass --url "
                               "http://HOST:PORT") from None
        logger.warning("%s (a running service keeps the config it last loaded); reading its metrics from %s",
                       full_error, listen)
        return "http://" + listen


def fetch_health(url: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """(healthy, text) of a service's /healthz; 503 is an answer, not an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return True, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            return False, exc.read().decode("utf-8")
        raise StreamdError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StreamdError(f"cannot read health from {url}: {reason} (is `streamd run` running?)") from None


@dataclass(frozen=True)
class StatusReport:
    healthy: bool
    text: str


def read_status(base: str) -> StatusReport:
    """The status table and health of the service at `base`."""
    samples = parse_metrics(fetch_metrics(f"{base}/metrics"))
    rows = camera_status_rows(samples)
    healthy, health_text = fetch_health(f"{base}/healthz")
    values = {name: value for name, labels, value in samples if not labels}
    lines = [format_status_table(rows), f"uptime {values.get('streamd_uptime_seconds', 0.0):.0f} s, "
             + ("healthy" if healthy else "UNHEALTHY")]
    if not healthy:
        lines += ["  " + line for line in health_text.splitlines()[1:] if line.strip()]
    return StatusReport(healthy=healthy and bool(rows), text="\n".join(lines))
