"""The viewer (nerfkit.viewer) without a browser: frames match `render`, progressive rendering, the page is
served, keyframes become nerfstudio's camera_path.json and render. The browser test is tests/test_viewer_browser.py."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from nerfkit import keyframes, renderer, runs, viewer, visualize
from nerfkit.types import background_rgb


@pytest.fixture(scope="module")
def run(tiny_run):
    return runs.load_run(tiny_run)


@pytest.fixture(scope="module")
def field(run):
    return viewer.FieldRenderer.of_run(run)


@pytest.fixture(scope="module")
def app(field, tiny_run, run):
    a = viewer.start(field, tiny_run, port=_free_port(), run=run)
    yield a
    a.server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_view(run, i: int = 0) -> viewer.View:
    cams = run.meta.cameras["train"]
    c2w = np.eye(4)
    c2w[:3] = cams.c2w[i]
    return viewer.View(c2w, float(2 * np.arctan(0.5 * cams.height / cams.fy[i])), cams.width / cams.height)


def test_camera_conventions_round_trip():
    rng = np.random.default_rng(0)
    q = rng.standard_normal(4)
    c2w = viewer.viser_to_c2w(q / np.linalg.norm(q), rng.standard_normal(3))
    wxyz, pos = viewer.c2w_to_viser(c2w)
    assert np.allclose(viewer.viser_to_c2w(wxyz, pos), c2w)
    # viser looks down +z of its rotation; nerfkit's camera down -z of its c2w: the same direction.
    import viser.transforms as vt

    assert np.allclose(vt.SO3(wxyz).as_matrix()[:, 2], -c2w[:3, 2])


def test_frame_matches_render_of_the_same_camera(run, field):
    cams = run.meta.cameras["train"]
    img = field.render(_train_view(run), cams.width, cams.height, "rgb")
    fn = renderer.make_render_fn(run.graphdef, run.sampler, background_rgb(run.meta.background))
    ref = visualize.to_uint8(renderer.render_view(fn, run.params, run.sampler_state, cams, 0, viewer.CHUNK)["rgb"])
    assert img.shape == ref.shape == (cams.height, cams.width, 3)
    assert np.abs(img.astype(int) - ref).max() <= 1
    for mode in ("depth", "opacity"):
        assert field.render(_train_view(run), 8, 8, mode).shape == (8, 8, 3)


def test_far_cameras_start_their_rays_near_the_scene(run, field):
    # From twice the training cameras' distance the scene would lie beyond the sampler's far bound.
    near = _train_view(run)
    c2w = near.c2w.copy()
    c2w[:3, 3] = field.center + 2.0 * (c2w[:3, 3] - field.center)
    far = viewer.View(c2w, near.fov, near.aspect)
    assert field.ahead(near) == pytest.approx(max(np.linalg.norm(near.c2w[:3, 3] - field.center) - field.radius, 0))
    assert field.ahead(far) == pytest.approx(np.linalg.norm(c2w[:3, 3] - field.center) - field.radius)
    assert field.ahead(far) > field.ahead(near) + 1.0


class _FakeClient:
    """Records the frames a ClientRenderer sends."""

    def __init__(self):
        self.frames = []
        self.scene = self

    def set_background_image(self, img, **_):
        self.frames.append(img.shape)


def test_progressive_low_then_full_resolution(run, field):
    client = _FakeClient()
    settings = viewer.Settings(max_side=64)
    r = viewer.ClientRenderer(client, field, settings)
    field.rays_per_s = 2_000.0  # a slow field: frames while moving are small
    r.start()
    try:
        r.move(_train_view(run))
        deadline = time.time() + 20
        while len(client.frames) < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert client.frames[0][1] < 64 <= max(client.frames[1][:2]), client.frames
        assert r.done[1] == "high"
        time.sleep(3 * viewer.SETTLE_SECONDS)
        assert len(client.frames) == 2  # still camera: nothing more to render
        cancelled = field.render(_train_view(run), 64, 64, cancelled=lambda: True)
        assert cancelled is None
    finally:
        r.running = False


def test_duty_cycle_spaces_frames(run, field):
    client = _FakeClient()
    r = viewer.ClientRenderer(client, field, viewer.Settings(max_side=32, duty=0.05))
    t0 = time.time()
    r.move(_train_view(run))
    r._render(r.version, "high")
    took = time.time() - t0
    assert r.next_start >= time.time() + 18 * took * 0.9 - 0.05  # idle 19x the render time


def test_page_is_served(app):
    with urllib.request.urlopen(f"http://127.0.0.1:{app.server.get_port()}/", timeout=10) as resp:
        assert resp.status == 200 and b"<html" in resp.read().lower()


def test_keyframes_saved_as_nerfstudio_camera_path(app, run, tiny_run):
    app.clear_keyframes()
    views = [_train_view(run, i) for i in (0, 2, 4)]
    for v in views:
        app.add_keyframe(v)
    app.fps.value, app.transition.value = 4, 1.0
    out = app.save_path()
    d = json.loads(out.read_text())
    assert out == tiny_run / "camera_path.json"
    for key in ("keyframes", "camera_path", "render_width", "render_height", "fps", "seconds", "camera_type",
                "smoothness_value", "is_cycle", "default_fov"):
        assert key in d, key
    assert d["camera_type"] == "perspective" and d["seconds"] == 2.0 and len(d["camera_path"]) == 8
    assert (d["render_width"], d["render_height"]) == (16, 16)
    for k, v in zip(d["keyframes"], views):
        assert np.allclose(np.reshape(k["matrix"], (4, 4)), v.c2w) and k["fov"] == pytest.approx(np.degrees(v.fov))
    frames = [np.reshape(f["camera_to_world"], (4, 4)) for f in d["camera_path"]]
    assert np.allclose(frames[0], views[0].c2w, atol=1e-6) and np.allclose(frames[4], views[1].c2w, atol=1e-6)
    steps = np.linalg.norm(np.diff([f[:3, 3] for f in frames], axis=0), axis=-1)
    assert steps.max() < 3 * np.median(steps)  # smooth: no jumps along the path
    assert all(f["fov"] == pytest.approx(np.degrees(views[0].fov)) for f in d["camera_path"])


def test_render_button_renders_the_path(app, tmp_path, run):
    app.clear_keyframes()
    for i in (0, 1):
        app.add_keyframe(_train_view(run, i))
    app.fps.value, app.transition.value = 3, 1.0
    app.path_name.value = "two.json"
    files = app.render_path()
    import imageio.v2 as iio

    assert [f.rsplit("/", 1)[1] for f in files] == ["two_rgb.mp4", "two_depth.mp4", "two_opacity.mp4"]
    with iio.get_reader(files[0]) as reader:
        frames = [f for f in reader]  # (list() asks the reader its length: inf)
    assert len(frames) == 3 and frames[0].shape == (16, 16, 3)


def test_render_button_without_ffmpeg_says_so_and_renders_nothing(app, tmp_path, run, tiny_run, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    app.clear_keyframes()
    for i in (0, 1):
        app.add_keyframe(_train_view(run, i))
    app.path_name.value = "nofmpeg.json"
    assert app.render_path() == []
    assert "without ffmpeg" in app.status.content and "no-ffmpeg does not exist" in app.status.content
    assert not list((tiny_run / "render").glob("nofmpeg_*.mp4"))


def test_keyframe_interpolation_is_smooth():
    from nerfkit.cameras import look_at

    keys = [keyframes.Keyframe(np.vstack([look_at((3 * np.cos(a), 3 * np.sin(a), 1.0), (0, 0, 0)), [0, 0, 0, 1]]),
                               50.0 + 10 * i, 1.0) for i, a in enumerate(np.linspace(0, 2, 5))]
    c2w, fov = keyframes.interpolate(keys, 120, smoothness=0.0)
    pos = c2w[:, :3, 3]
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
    accel = np.linalg.norm(np.diff(pos, 2, axis=0), axis=-1)
    assert speed.min() > 0.3 * speed.max() and accel.max() < 0.2 * speed.mean()
    assert np.allclose(c2w[[0, 30, 60, 90], :3], [k.c2w[:3] for k in keys[:4]], atol=1e-6)
    assert np.all(np.diff(fov) > 0)
    r = c2w[:, :3, :3]
    assert np.allclose(r @ np.swapaxes(r, 1, 2), np.eye(3), atol=1e-6)
    # tension 1 (nerfstudio's smoothness slider at the top) bends less between keyframes than tension -1
    tight, _ = keyframes.interpolate(keys, 120, smoothness=1.0)
    loose, _ = keyframes.interpolate(keys, 120, smoothness=-1.0)
    chord = lambda p: np.linalg.norm(np.diff(p[:, :3, 3], axis=0), axis=-1).sum()  # noqa: E731
    assert chord(tight) < chord(c2w) < chord(loose)


def test_fit_loop_hands_the_viewer_parameters(tiny_blender_dir, tmp_path, monkeypatch):
    import dataclasses

    from nerfkit.fit import fit

    from .conftest import tiny_fit_config

    calls = []
    started = threading.Event()

    class Recorder:
        @classmethod
        def start(cls, *args):
            started.set()
            return cls()

        def update(self, step, params, state):
            calls.append(step)

        def close(self):
            calls.append("closed")

    monkeypatch.setattr(viewer, "LiveViewer", Recorder)
    cfg = dataclasses.replace(tiny_fit_config(tmp_path / "run", tiny_blender_dir, steps=3), viewer=True)
    fit(cfg)
    assert started.is_set() and calls == [1, 2, 3, "closed"]


def test_view_command_rejects_a_missing_run(tmp_path, capsys):
    from cli.main import main

    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
