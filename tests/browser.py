"""A headless Chromium driven over the DevTools protocol (CDP) with the `websockets` package viser already
depends on: open a page, take screenshots. No browser download: Debian's `chromium` package
(`apt-get install chromium`); tests skip when it is missing."""

from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request

import numpy as np

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Browser:
    """One headless Chromium with one page; ``close()`` ends it (the process this object started)."""

    def __init__(self, width: int = 960, height: int = 640, port: int = 9333):
        self.profile = tempfile.mkdtemp(prefix="nerfkit-chromium-")
        # SCHED_IDLE (chrt -i), which chromium's processes inherit: the browser's software WebGL only gets CPU
        # time nothing else wants (chromium raises its GPU process's nice level, so `nice` would not do it).
        idle = ["chrt", "-i", "0"] if shutil.which("chrt") else []
        self.proc = subprocess.Popen(
            [*idle, CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--no-first-run", "--disable-extensions", f"--remote-debugging-port={port}",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        self.ws = self._connect(port)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _connect(self, port: int, timeout: float = 30.0):
        from websockets.sync.client import connect

        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
                return connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            except (OSError, IndexError, KeyError):
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("chromium did not start its DevTools endpoint") from None
                time.sleep(0.2)

    def call(self, method: str, **params) -> dict:
        """Send one CDP command and return its result (events arriving meanwhile are dropped)."""
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self) -> np.ndarray:
        """The page as uint8 [H, W, 3]."""
        from PIL import Image

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
