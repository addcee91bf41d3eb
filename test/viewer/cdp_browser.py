"""A headless Chromium driven over the DevTools protocol (CDP) with a small websocket client.

Used by the viewer tests and the docs screenshot script: load a page, run JavaScript in it,
take screenshots. Only what those need; ``websockets`` comes with viser.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import numpy as np

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server", "--hide-scrollbars", "--mute-audio",
)


class CdpError(RuntimeError):
    pass


class HeadlessChromium:
    """One Chromium process with one page; ``call`` sends a CDP command to that page and returns its result."""

    def __init__(self, width: int = 960, height: int = 640, binary: str = CHROMIUM, timeout: float = 20.0) -> None:
        from websockets.sync.client import connect

        self.timeout = timeout
        self._id = 0
        self._profile = tempfile.mkdtemp(prefix="ilrm-chromium-")
        self._log = open(os.path.join(self._profile, "chromium.log"), "w+")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
        )
        try:
            port = self._devtools_port()
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as reply:
                targets = json.load(reply)
            page = next(t for t in targets if t["type"] == "page")
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, proxy=None, open_timeout=timeout)
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self) -> int:
        path = os.path.join(self._profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}: {self.log_tail()}")
            if os.path.exists(path):
                lines = open(path).read().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.05)
        raise CdpError(f"chromium opened no DevTools port within {self.timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-chars:]

    def call(self, method: str, **params) -> dict:
        """Send a command and wait for its reply (events in between are dropped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply["result"]

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event (the page is briefly detached while navigating)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if self.evaluate("document.readyState + ' ' + location.href").startswith("complete " + url):
                    return
            except CdpError:
                pass
            if time.monotonic() > deadline:
                raise CdpError(f"{url} did not load within {self.timeout:.0f} s")
            time.sleep(0.1)

    def evaluate(self, expression: str):
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"javascript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot_png(self, clip: dict | None = None) -> bytes:
        params = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def screenshot(self) -> np.ndarray:
        """The page as uint8 HxWx3 RGB."""
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.screenshot_png())).convert("RGB"))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "HeadlessChromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def colour_fractions(rgb: np.ndarray) -> dict[str, float]:
    """Fractions of pixels that are strongly red, green or blue (one channel > 150, the others < 100)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    n = r.size
    return {
        "red": float(((r > 150) & (g < 100) & (b < 100)).sum()) / n,
        "green": float(((g > 150) & (r < 100) & (b < 100)).sum()) / n,
        "blue": float(((b > 150) & (r < 100) & (g < 100)).sum()) / n,
        "white": float(((r > 245) & (g > 245) & (b > 245)).sum()) / n,
    }


def wait_for(predicate, timeout: float, interval: float = 0.5):
    """Poll ``predicate()`` until it returns a truthy value; that value, or the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
