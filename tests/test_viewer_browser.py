"""The viewer in a real browser: headless Chromium (Debian's `chromium`, driven over CDP by tests/browser.py)
opens the page of `nerfkit view`'s server on a small fitted run; the screenshot must show the scene (its
pixels correlate with a render of the client's camera), and moving the camera through viser's API must change
the picture within 2 s. Slow (a 200-step fit and a software-WebGL browser): `pytest -m slow`. Skipped without
chromium. Set NERFKIT_SCREENSHOTS=DIR to keep the two screenshots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from .browser import CHROMIUM, Browser

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")]

REGION = (slice(170, 560), slice(0, 600))  # rows, columns of a 960x640 page clear of viser's panel and notices


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """The demo scene at 32x32 fitted for 200 steps with a small coarse-only MLP (~18 dB: the shapes show)."""
    from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig
    from nerfkit.data.demo import make_demo_scene, write_blender
    from nerfkit.fit import fit

    root = tmp_path_factory.mktemp("browser")
    write_blender(make_demo_scene(width=32, height=32, n_train=30, n_val=0, n_test=1), root / "scene")
    field = FieldConfig(depth=2, width=64, skips=(), view_width=32, density_activation="softplus", density_bias=-1.0)
    fit(FitConfig(out=root / "run", data=DataConfig(data=root / "scene"), preset="test",
                  model=ModelConfig(coarse=field, fine=field, num_coarse=16, num_fine=0, clip_to_aabb=True,
                                    sampler="hierarchical"),
                  train=TrainConfig(steps=200, batch_rays=256, lr_init=1e-2, lr_final=1e-3, log_every=100,
                                    val_every=0, val_views=0, checkpoint_every=100_000, render_chunk=1024)))
    return root / "run"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, what: str):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _correlation(shot: np.ndarray, field, view) -> float:
    """Pearson correlation, over REGION, of the screenshot with the field rendered from ``view`` at 240x160."""
    from PIL import Image

    small = np.asarray(Image.fromarray(shot).resize((240, 160), Image.BILINEAR), np.float64)
    ref = field.render(view, 240, 160, "rgb").astype(np.float64)
    rows, cols = (slice(s.start // 4, s.stop // 4) for s in REGION)
    a, b = small[rows, cols].ravel(), ref[rows, cols].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _keep(name: str, shot: np.ndarray) -> None:
    if os.environ.get("NERFKIT_SCREENSHOTS"):
        from PIL import Image

        Path(os.environ["NERFKIT_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot).save(Path(os.environ["NERFKIT_SCREENSHOTS"]) / name)


def test_viewer_page_shows_the_scene_and_follows_the_camera(trained_run):
    from nerfkit import runs, viewer

    run = runs.load_run(trained_run)
    field = viewer.FieldRenderer.of_run(run)
    app = viewer.start(field, trained_run, port=_free_port(), images=viewer.thumbnails(run),
                       settings=viewer.Settings(max_side=480), run=run)
    browser = Browser(960, 640, port=_free_port())
    try:
        browser.open(f"http://127.0.0.1:{app.server.get_port()}/")
        _wait(lambda: app.clients, 30, "the page to connect")
        r = next(iter(app.clients.values()))
        _wait(lambda: r.done[1] == "high" and r.done[0] == r.version, 60, "the full-resolution frame")
        time.sleep(1.0)  # the browser decodes and draws it
        _keep("viewer_1.png", browser.screenshot())  # with the training cameras
        app.show_training_cameras(False)  # the field's picture alone, to compare with a render
        time.sleep(1.0)
        first = browser.screenshot()
        corr = _correlation(first, field, viewer.View.of(r.client.camera))
        print(f"screenshot vs render: correlation {corr:.3f}")
        assert corr > 0.8, corr

        cam = r.client.camera
        target = np.asarray(cam.look_at)
        pos = target + 0.7 * (np.asarray(cam.position) - target) + np.asarray([0.0, 0.0, 0.8])
        v0, t0 = r.version, time.time()
        with r.client.atomic():
            cam.position = pos
            cam.look_at = target
        # The browser reports the new camera, the server renders a (small) frame for it and sends it.
        _wait(lambda: r.version > v0 and r.done[0] == r.version, 30, "a frame of the moved camera")
        sent = r.sent_at - t0
        moved = browser.screenshot()
        visible = time.time() - t0
        print(f"camera move -> frame sent {sent:.2f} s, screenshot showing it taken by {visible:.2f} s")
        assert np.abs(moved[REGION].astype(int) - first[REGION]).mean() > 3.0  # the picture changed
        assert sent < 2.0, sent
        _wait(lambda: r.done[1] == "high" and r.done[0] == r.version, 60, "the full-resolution frame")
        time.sleep(1.0)
        second = browser.screenshot()
        _keep("viewer_2.png", second)
        corr2 = _correlation(second, field, viewer.View.of(r.client.camera))
        print(f"after the move: correlation {corr2:.3f}")
        assert corr2 > 0.8, corr2
    finally:
        browser.close()
        app.server.stop()
