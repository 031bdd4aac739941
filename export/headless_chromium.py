"""Headless Chromium driven over the DevTools protocol, for the live page test and its benchmark.

Starts the browser (Debian's `chromium`, or Chrome) with a throwaway profile and a free DevTools
port, then talks to its first page over a WebSocket (`websocket-client`): navigate, evaluate
JavaScript, take a screenshot. Nothing here is part of the service.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install Debian's chromium (apt-get install -y chromium)"


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable on PATH, or None."""
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


class BrowserError(RuntimeError):
    """The browser did not start, or a DevTools call failed."""


class HeadlessChromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, executable: str | None = None, window_wh: tuple[int, int] = (1280, 800),
                 start_timeout_s: float = 60.0) -> None:
        found = executable or find_chromium()
        if found is None:
            raise BrowserError(f"no Chromium found on PATH: {INSTALL_HINT}")
        self.executable = found
        self.window_wh = window_wh
        self.start_timeout_s = start_timeout_s
        self._profile = Path(tempfile.mkdtemp(prefix="streamd-chromium-"))
        self._process: subprocess.Popen[str] | None = None
        self._socket: Any = None
        self._next_id = 0

    def __enter__(self) -> "HeadlessChromium":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        import websocket  # websocket-client, in the dev extra

        arguments = [
            self.executable, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--mute-audio", "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
            "--remote-allow-origins=*", f"--user-data-dir={self._profile}",
            f"--window-size={self.window_wh[0]},{self.window_wh[1]}", "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            arguments.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        endpoint = self._devtools_endpoint()
        page_url = self._page_socket_url(endpoint)
        self._socket = websocket.create_connection(page_url, timeout=30, suppress_origin=True)

    def _devtools_endpoint(self) -> str:
        """host:port from Chromium's 'DevTools listening on ws://...' line."""
        assert self._process is not None and self._process.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        stderr = self._process.stderr

        def pump() -> None:
            for line in stderr:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self._process.poll() is not None:
                    raise BrowserError(f"{self.executable} exited with {self._process.returncode} at start") from None
                continue
            if "DevTools listening on ws://" in line:
                return line.split("ws://", 1)[1].split("/", 1)[0]
        raise BrowserError(f"{self.executable} did not open its DevTools port within {self.start_timeout_s:.0f} s")

    @staticmethod
    def _page_socket_url(endpoint: str) -> str:
        with urllib.request.urlopen(f"http://{endpoint}/json/list", timeout=10) as response:
            targets = json.loads(response.read())
        pages = [target for target in targets if target.get("type") == "page"]
        if not pages:
            raise BrowserError("the browser has no page to drive")
        return pages[0]["webSocketDebuggerUrl"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its result (events in between are skipped)."""
        self._next_id += 1
        message_id = self._next_id
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv())
            if reply.get("id") != message_id:
                continue
            if "error" in reply:
                raise BrowserError(f"{method}: {reply['error'].get('message')}")
            return reply.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)


#: JavaScript: what the live page reports into its DOM, per camera and view.
PAGE_STATE_JS = """(() => {
  const views = [...document.querySelectorAll('.view')].map(v => ({
    kind: v.classList.contains('hls') ? 'hls' : 'mjpeg', camera: v.dataset.camera, state: v.dataset.state,
    frames: Number(v.dataset.frames || 0), updates: Number(v.dataset.updates || 0),
    firstFrameMs: v.dataset.firstFrameMs ? Number(v.dataset.firstFrameMs) : null}));
  const rows = [...document.querySelectorAll('#cameras tbody tr')].map(tr => [...tr.cells].map(td => td.textContent));
  return {cameras: Number((document.body && document.body.dataset.cameras) || 0), rows, views};
})()"""


def pixels_js(kind: str, camera_id: str) -> str:
    """JavaScript: the shown picture of one view as {width, height, rgb: base64 of RGB bytes}."""
    selector = f".view.{kind}[data-camera=\"{camera_id}\"] {'video' if kind == 'hls' else 'img'}"
    return f"""(() => {{
  const element = document.querySelector('{selector}');
  const width = element.videoWidth || element.naturalWidth, height = element.videoHeight || element.naturalHeight;
  if (!width) return null;
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext('2d');
  context.drawImage(element, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  let text = '';
  for (let i = 0; i < rgba.length; i += 4) text += String.fromCharCode(rgba[i], rgba[i + 1], rgba[i + 2]);
  return {{width, height, rgb: btoa(text)}};
}})()"""
