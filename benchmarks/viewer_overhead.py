"""How much ``nerfkit fit --viewer`` slows the step loop, with a client connected and moving its camera.

    python benchmarks/viewer_overhead.py                                   # lego 100x100, hash-fast, 3 pairs
    python benchmarks/viewer_overhead.py --steps 40 --skip 20 --pairs 1 --preset demo --data "" \\
        --name viewer_overhead_rehearsal                                   # a rehearsal (the demo scene)

The same fit (``nerfkit fit PRESET --data DATA --downscale 4 --steps STEPS``, a fresh run directory each time)
runs without and with ``--viewer``, alternating off/on for ``--pairs`` pairs, so that slow drifts of the
machine's load hit both alike. The viewer renders only while a browser tab is connected, so each ``--viewer``
run gets one: a Python websocket client speaking viser's protocol (what the browser's viser client sends: a
``ViewerCameraMessage``), connected as soon as the port opens, orbiting its camera around the scene by
``--orbit-degrees`` every ``--move-every`` seconds, and reading every frame the server sends (it counts the
background images: the viewer's renders). What it does not include: the browser's own CPU time (a browser on
the same machine would also compete for the CPU; a browser elsewhere would not).

Steps/s of a run: its training steps after step ``--skip`` over the training time they took (``metrics.jsonl``:
``step`` and ``train_time`` of the log lines; compilation and validation are outside that window). Per pair, the
ratio viewer / no viewer (1.0: no slowdown; the issue asks for >= 0.90), and the median of the pairs.
Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LEGO, ROOT, environment, write_result  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steps_per_second(metrics: Path, skip: int) -> dict:
    """Training steps after step ``skip`` over the training time they took, from the log lines of a run."""
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    logs = [x for x in lines if "loss" in x]
    window = [x for x in logs if x["step"] >= skip]
    if len(window) < 2:
        raise SystemExit(f"{metrics}: fewer than two log lines after step {skip}; use more --steps or less --skip")
    first, last = window[0], window[-1]
    return {"steps_per_s": (last["step"] - first["step"]) / (last["train_time"] - first["train_time"]),
            "window": [first["step"], last["step"]], "seconds": last["train_time"] - first["train_time"]}


class OrbitClient(threading.Thread):
    """A viser client in a thread: connects to ``ws://127.0.0.1:port`` (retrying until the server is up), sends a
    camera looking at the origin from ``radius``, moves it every ``move_every`` seconds, and counts the
    background images (rendered frames) the server sends."""

    def __init__(self, port: int, radius: float, move_every: float, degrees: float):
        super().__init__(daemon=True)
        self.port, self.radius, self.move_every, self.degrees = port, radius, move_every, degrees
        self.frames, self.moves, self.connected_at = 0, 0, None
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import viser
        import websockets

        while not self.stop.is_set():
            try:
                async with websockets.connect(f"ws://127.0.0.1:{self.port}", max_size=None,
                                              subprotocols=[f"viser-v{viser.__version__}"]) as ws:
                    self.connected_at = time.time()
                    await asyncio.gather(self._send(ws), self._receive(ws))
                    return
            except (OSError, websockets.exceptions.InvalidHandshake, websockets.exceptions.ConnectionClosed):
                await asyncio.sleep(0.2)

    async def _send(self, ws) -> None:
        angle = 0.0
        while not self.stop.is_set():
            await ws.send(camera_message(self.radius, angle))
            self.moves += 1
            angle += self.degrees
            await asyncio.sleep(self.move_every)
        await ws.close()

    async def _receive(self, ws) -> None:
        import websockets

        try:
            async for raw in ws:
                self.frames += sum(m.get("type") == "BackgroundImageMessage" for m in decode(raw))
        except websockets.exceptions.ConnectionClosed:
            pass


def camera_message(radius: float, degrees: float) -> bytes:
    """A viser ``ViewerCameraMessage`` (msgpack, as the browser sends it): from ``radius`` at ``degrees`` about
    the z axis and 30 degrees up, looking at the origin (OpenCV camera, +z forward; up +z)."""
    import msgspec
    import viser.transforms as vtf
    from viser._messages import ViewerCameraMessage

    a, e = np.radians(degrees), np.radians(30.0)
    position = radius * np.array([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)])
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    wxyz = vtf.SO3.from_matrix(np.stack([right, down, forward], axis=1)).wxyz
    msg = ViewerCameraMessage(wxyz=tuple(map(float, wxyz)), position=tuple(map(float, position)), fov=0.8,
                              near=0.01, far=100.0, image_height=480, image_width=640, look_at=(0.0, 0.0, 0.0),
                              up_direction=(0.0, 0.0, 1.0))
    return msgspec.msgpack.encode(msg.as_serializable_dict())


def decode(raw: bytes) -> list[dict]:
    """The messages of one server window (viser's wire format: two little-endian uint64 sizes, then the
    zstd-compressed msgpack of ``{"messages": [...], ...}``, then binary buffers)."""
    import msgspec
    import zstandard

    if not isinstance(raw, bytes) or len(raw) < 16:
        return []
    size, compressed = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
    inner = zstandard.ZstdDecompressor().decompress(raw[16:16 + compressed], max_output_size=size)
    return list(msgspec.msgpack.decode(inner).get("messages", ()))


def fit_once(args, out: Path, viewer: bool) -> dict:
    """One fit (a subprocess); with ``viewer``, an :class:`OrbitClient` attached. Its steps/s and client counts."""
    cmd = [sys.executable, "-m", "cli.main", "fit", args.preset, "--steps", str(args.steps), "--out", str(out)]
    if args.data:
        cmd += ["--data", str(args.data), "--downscale", str(args.downscale)]
    client = None
    if viewer:
        port = free_port()
        cmd += ["--viewer", "--viewer-port", str(port)]
        client = OrbitClient(port, args.radius, args.move_every, args.orbit_degrees)
        client.start()
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.log", "w") as log:  # the fit's progress lines
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    res = {"viewer": viewer, "wall_s": time.time() - t0, **steps_per_second(out / "metrics.jsonl", args.skip)}
    if client is not None:
        client.stop.set()
        client.join(timeout=5)
        res.update(client_connected=client.connected_at is not None, frames=client.frames, camera_moves=client.moves)
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="hash-fast")
    ap.add_argument("--data", default=str(LEGO), help="data directory ('' for a preset with its own, e.g. demo)")
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--skip", type=int, default=40, help="steps/s counts the steps after this one")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--move-every", type=float, default=1.0, help="seconds between the client's camera moves")
    ap.add_argument("--orbit-degrees", type=float, default=10.0)
    ap.add_argument("--radius", type=float, default=4.0, help="camera distance from the origin (scene units)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/viewer-overhead"))
    ap.add_argument("--name", default=None)
    args = ap.parse_args()

    import shutil

    env = environment()
    runs, pairs = [], []
    for i in range(args.pairs):
        pair = {}
        for viewer in (False, True):
            out = args.work / f"pair{i}_{'on' if viewer else 'off'}"
            shutil.rmtree(out, ignore_errors=True)
            pair[viewer] = fit_once(args, out, viewer)
            runs.append(pair[viewer])
        pairs.append(pair[True]["steps_per_s"] / pair[False]["steps_per_s"])
    figures = {"ratio_viewer_over_off_per_pair": pairs, "ratio_median": statistics.median(pairs),
               "slowdown_median": 1.0 - statistics.median(pairs), "runs": runs,
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    device = env["device"]["platform"]
    path = write_result(args.name or f"viewer_overhead_{device}", figures, env=env)
    print(json.dumps({k: figures[k] for k in ("ratio_viewer_over_off_per_pair", "ratio_median")}, indent=1))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
