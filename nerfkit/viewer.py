"""The interactive viewer (``nerfkit view RUN_DIR``, ``nerfkit fit --viewer``), a viser web app.

viser serves a three.js page; the browser's camera (orbit with the mouse, fly with WASD/QE) comes back to
Python, where :class:`ClientRenderer` renders the field from it on the CPU and sends the frame as the page's
background. Rendering is progressive (nerfview's pattern): while the camera moves, each frame is rendered
small enough to take about ``MOVE_SECONDS``; once it has been still for ``SETTLE_SECONDS``, the view is
rendered again at the full ``max side`` resolution, in blocks, abandoned as soon as the camera moves again.
The panel chooses rgb, depth or opacity; shows the training cameras as frustums with thumbnails of their
images; adds keyframes from the current view, previews the path through them (a spline in the scene and a
slider that flies the camera along it), saves it as nerfstudio's ``camera_path.json``
(:mod:`nerfkit.keyframes`) and renders it to videos (:func:`nerfkit.video.write_videos`).

Cameras: viser's are OpenCV-style (x right, y down, looking down +z); nerfkit's OpenGL-style; the two differ
by a half turn about the camera's x axis (:func:`viser_to_c2w`, :func:`c2w_to_viser`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np

from nerfkit import camera_paths, keyframes, parallel, renderer, runs, visualize
from nerfkit import cameras as cam
from nerfkit.mip import pixel_radius
from nerfkit.types import Cameras, background_rgb

MODES = ("rgb", "depth", "opacity")
CHUNK = 4096  # rays per rendering call: one compiled shape for every frame size
BLOCK = 4 * CHUNK  # rays between checks whether a full-resolution frame is still wanted
MOVE_SECONDS = 0.12  # target render time of a frame while the camera moves
SETTLE_SECONDS = 0.25  # the camera is still this long before the full-resolution frame
START_BACK = 1.6  # a new tab's camera: the first training camera's, this much farther from the focus point
MIN_SIDE = 32
_FLIP = np.diag([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL camera axes


def c2w_to_viser(c2w) -> tuple[np.ndarray, np.ndarray]:
    """An OpenGL camera-to-world [3|4, 4] -> viser's (wxyz, position) of the same camera.

    >>> wxyz, pos = c2w_to_viser(np.eye(4))
    >>> np.allclose(viser_to_c2w(wxyz, pos), np.eye(4))
    True
    """
    m = np.asarray(c2w, np.float64)
    return camera_paths.rotation_to_quaternion(m[:3, :3] @ _FLIP), m[:3, 3].copy()


def viser_to_c2w(wxyz, position) -> np.ndarray:
    """viser's (wxyz, position) -> the OpenGL camera-to-world float64 [4, 4] of the same camera."""
    out = np.eye(4)
    out[:3, :3] = camera_paths.quaternion_to_rotation(np.asarray(wxyz, np.float64)) @ _FLIP
    out[:3, 3] = position
    return out


@dataclasses.dataclass(frozen=True)
class View:
    """A camera to render: ``c2w`` float [4, 4] (OpenGL), ``fov`` vertical in radians, ``aspect`` width/height."""

    c2w: np.ndarray
    fov: float
    aspect: float

    @classmethod
    def of(cls, camera) -> "View":
        """The view of a viser camera handle."""
        return cls(viser_to_c2w(camera.wxyz, camera.position), float(camera.fov), float(camera.aspect))


def image_size(aspect: float, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side ``max_side`` (at least ``MIN_SIDE`` / 4 pixels each).

    >>> image_size(1.5, 96), image_size(0.5, 64)
    ((96, 64), (32, 64))
    """
    if aspect >= 1:
        return max_side, max(int(round(max_side / aspect)), MIN_SIDE // 4)
    return max(int(round(max_side * aspect)), MIN_SIDE // 4), max_side


def view_cameras(view: View, width: int, height: int, base: Cameras) -> Cameras:
    """One pinhole camera for ``view`` at ``width`` x ``height`` (square pixels, centred principal point).
    Forward-facing (NDC) runs keep the training cameras' focal length relative to the image, which their
    NDC projection needs, so their field of view is the capture's."""
    fy = 0.5 * height / np.tan(0.5 * view.fov)
    fx = fy
    if base.ndc_near is not None:
        fx, fy = float(base.fx[0]) * width / base.width, float(base.fy[0]) * height / base.height
    one = lambda v: np.full(1, v, np.float32)  # noqa: E731
    return Cameras(c2w=np.asarray(view.c2w, np.float32)[None, :3], fx=one(fx), fy=one(fy), cx=one(width / 2),
                   cy=one(height / 2), width=width, height=height, ndc_near=base.ndc_near)


class FieldRenderer:
    """Renders views of a field: ``set_params`` swaps in new parameters (training), :meth:`render` draws."""

    def __init__(self, graphdef, sampler, params, sampler_state, meta: runs.SceneMeta):
        self.meta = meta
        self.mesh = parallel.render_mesh(CHUNK)
        self.fn = renderer.make_render_fn(graphdef, sampler, background_rgb(meta.background), mesh=self.mesh)
        self.rays_per_s = 20_000.0  # refined after every frame
        self.lock = threading.Lock()  # one frame at a time
        self.set_params(params, sampler_state)
        train = meta.cameras["train"].c2w
        focus = camera_paths.focus_point(train)
        self.center = np.asarray(meta.aabb, np.float64).mean(0) if focus is None else focus
        self.radius = float(np.median(np.linalg.norm(train[:, :3, 3] - self.center, axis=-1)))

    @classmethod
    def of_run(cls, run: runs.Run) -> "FieldRenderer":
        return cls(run.graphdef, run.sampler, run.params, run.sampler_state, run.meta)

    def set_params(self, params, sampler_state) -> None:
        self.params = parallel.replicate((params, sampler_state), self.mesh)

    def render(self, view: View, width: int, height: int, mode: str = "rgb", cancelled=None) -> np.ndarray | None:
        """The view as uint8 [height, width, 3] (``mode``: rgb, depth or opacity); None when ``cancelled()``
        turned true between blocks of rays."""
        cams = view_cameras(view, width, height, self.meta.cameras["train"])
        rays = cam.image_rays(cams, 0, np)
        o, d = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
        ahead = self.ahead(view)
        o = o + ahead * d
        radii = np.full(len(o), float(pixel_radius(float(cams.fx[0]))), np.float32)
        params, state = self.params
        parts, t0 = [], time.time()
        with self.lock:
            for i in range(0, len(o), BLOCK):
                if cancelled is not None and cancelled():
                    return None
                s = slice(i, i + BLOCK)
                parts.append(renderer.render_rays_chunked(self.fn, params, state, o[s], d[s], CHUNK, radii=radii[s]))
        self.rays_per_s = 0.5 * self.rays_per_s + 0.5 * len(o) / max(time.time() - t0, 1e-6)
        out = {k: np.concatenate([p[k] for p in parts]).reshape(height, width, *parts[0][k].shape[1:])
               for k in ("rgb", "depth", "opacity")}
        out["depth"] = out["depth"] + ahead
        return to_image(out, mode, self.meta.near + ahead, self.meta.far + ahead)

    def ahead(self, view: View) -> float:
        """How far to start the rays ahead of a camera that is farther from the scene than the training cameras
        (their median distance from the focus point), so that the scene stays within the sampler's near..far:
        0 for nearer cameras and forward-facing (NDC) runs."""
        if self.meta.cameras["train"].ndc_near is not None:
            return 0.0
        return max(float(np.linalg.norm(np.asarray(view.c2w)[:3, 3] - self.center)) - self.radius, 0.0)


def to_image(out: dict, mode: str, near: float, far: float) -> np.ndarray:
    """A rendering's ``rgb``, colour-mapped ``depth`` or grey ``opacity`` as uint8 [H, W, 3]."""
    if mode == "depth":
        return visualize.to_uint8(visualize.depth_to_rgb(out["depth"], out["opacity"], near, far))
    if mode == "opacity":
        return visualize.to_uint8(np.repeat(out["opacity"][..., None], 3, axis=-1))
    return visualize.to_uint8(out["rgb"])


@dataclasses.dataclass
class Settings:
    """What the panel chooses for every client: ``mode`` and the full-resolution ``max_side``; ``duty``: the
    largest fraction of wall time spent rendering (1 when viewing a run; small while training)."""

    mode: str = "rgb"
    max_side: int = 512
    duty: float = 1.0


class ClientRenderer(threading.Thread):
    """One browser tab's render loop (progressive: see the module docstring). ``move`` gives it a new camera,
    ``refresh`` asks for the same camera again (new mode, new parameters)."""

    def __init__(self, client, field: FieldRenderer, settings: Settings):
        super().__init__(daemon=True)
        self.client, self.field, self.settings = client, field, settings
        self.view: View | None = None
        self.version, self.moved_at = 0, 0.0
        self.done: tuple[int, str] = (-1, "")  # (version, quality) of the frame on screen
        self.wake = threading.Event()
        self.running = True
        self.frames = 0  # frames sent, and when the last one was
        self.sent_at = 0.0
        self.next_start = 0.0  # the duty cycle's earliest start of the next frame

    def move(self, view: View) -> None:
        self.view, self.moved_at = view, time.time()
        self.version += 1
        self.wake.set()

    def refresh(self) -> None:
        self.version += 1
        self.wake.set()

    def run(self) -> None:
        while self.running:
            self.wake.wait(0.05)
            self.wake.clear()
            job = self._next_job()
            if job is None:
                continue
            if time.time() < self.next_start:  # keep within the duty cycle; a newer camera may come meanwhile
                time.sleep(min(self.next_start - time.time(), 0.05))
                continue
            self._render(*job)

    def _next_job(self) -> tuple[int, str] | None:
        """(version, "low" | "high") to render now, or None."""
        if self.view is None:
            return None
        version, (done_version, quality) = self.version, self.done
        if done_version != version:
            return version, "low"
        if quality == "low" and time.time() - self.moved_at >= SETTLE_SECONDS:
            return version, "high"
        return None

    def _render(self, version: int, quality: str) -> None:
        view, s = self.view, self.settings
        side = s.max_side
        if quality == "low":
            pixels = self.field.rays_per_s * MOVE_SECONDS
            side = int(np.clip(np.sqrt(pixels * max(view.aspect, 1 / view.aspect)), MIN_SIDE, s.max_side))
        w, h = image_size(view.aspect, side)
        t0 = time.time()
        img = self.field.render(view, w, h, s.mode, cancelled=lambda: self.version != version)
        took = time.time() - t0
        self.next_start = time.time() + took * (1.0 / s.duty - 1.0)
        if img is None:
            return
        self.client.scene.set_background_image(img, format="jpeg", jpeg_quality=90 if quality == "high" else 60)
        self.done, self.frames, self.sent_at = (version, quality), self.frames + 1, time.time()


def frustum_scale(c2w: np.ndarray) -> float:
    """A frustum size that suits the cameras' spacing: 1/20 of their median distance from their centroid.

    >>> frustum_scale(np.stack([np.eye(3, 4) + np.eye(3, 4, k=3) * x for x in (-1.0, 1.0)]))
    0.05
    """
    pos = np.asarray(c2w)[:, :3, 3]
    return float(max(0.05 * np.median(np.linalg.norm(pos - pos.mean(0), axis=-1)), 1e-3))


def thumbnails(run: runs.Run, side: int = 64) -> list[np.ndarray] | None:
    """The training images downsampled to ``side`` pixels on the longer side (uint8), or None when the run's
    dataset cannot be read from where it was fitted."""
    from nerfkit.errors import InputError

    try:
        train = runs.load_scene(run.cfg.data, splits=("train",)).splits["train"]
    except (InputError, OSError):
        return None
    step = max(1, int(np.ceil(max(train.cameras.width, train.cameras.height) / side)))
    bg = background_rgb(run.meta.background)
    return [visualize.to_uint8(train.composite(bg, i)[::step, ::step]) for i in range(len(train))]


class Viewer:
    """The viser app: panel, training cameras, keyframes and one :class:`ClientRenderer` per browser tab.

    Args:
      server: a ``viser.ViserServer``; field: what renders; run_dir: where ``camera_path.json`` and renders go;
      images: training-image thumbnails (or None: frustums without pictures); settings: shared by every tab;
      run: the fitted run, for the render button (None while training: no render button).
    """

    def __init__(self, server, field: FieldRenderer, run_dir: Path, images=None, settings: Settings | None = None,
                 run: runs.Run | None = None):
        self.server, self.field, self.run_dir, self.run = server, field, Path(run_dir), run
        self.settings = settings or Settings()
        self.clients: dict[int, ClientRenderer] = {}
        self.keys: list[keyframes.Keyframe] = []
        self.key_nodes: dict = {}  # scene nodes of the keyframes and the path preview, by name
        train = field.meta.cameras["train"]
        self.up = camera_paths.mean_up(train.c2w)
        self.focus = camera_paths.focus_point(train.c2w)
        server.scene.set_up_direction(tuple(float(x) for x in self.up))
        self.frustums = add_training_cameras(server, train, images, frustum_scale(train.c2w))
        self._panel()
        server.on_client_connect(self._connect)
        server.on_client_disconnect(self._disconnect)

    def _panel(self) -> None:
        gui, s = self.server.gui, self.settings
        mode = gui.add_dropdown("Output", MODES, initial_value=s.mode)
        side = gui.add_slider("Max side (px)", min=64, max=1024, step=32, initial_value=s.max_side)
        self.show_cameras = gui.add_checkbox("Training cameras", True)
        self.status = gui.add_markdown("")

        self.show_cameras.on_update(lambda _: self.show_training_cameras(bool(self.show_cameras.value)))

        @mode.on_update
        def _(_) -> None:
            s.mode = mode.value
            self.refresh()

        @side.on_update
        def _(_) -> None:
            s.max_side = int(side.value)
            self.refresh()

        with gui.add_folder("Camera path"):
            self._path_panel()

    def _path_panel(self) -> None:
        gui = self.server.gui
        add, clear = gui.add_button("Add keyframe (current view)"), gui.add_button("Clear keyframes")
        self.transition = gui.add_number("Seconds per transition", 2.0, min=0.1, step=0.1)
        self.fps = gui.add_number("FPS", 30, min=1, max=120, step=1)
        self.smoothness = gui.add_slider("Smoothness (tension)", min=-1.0, max=1.0, step=0.05, initial_value=0.0)
        self.preview = gui.add_slider("Preview", min=0.0, max=1.0, step=0.01, initial_value=0.0)
        self.path_name = gui.add_text("File", "camera_path.json")
        save = gui.add_button("Save camera_path.json")
        self.render_button = gui.add_button("Render the path", visible=self.run is not None)
        add.on_click(lambda event: self.add_keyframe(View.of(event.client.camera)))
        clear.on_click(lambda _: self.clear_keyframes())
        self.preview.on_update(lambda _: self.preview_at(float(self.preview.value)))
        save.on_click(lambda _: self.save_path())
        self.render_button.on_click(lambda _: threading.Thread(target=self.render_path, daemon=True).start())

    def show_training_cameras(self, visible: bool) -> None:
        for f in self.frustums:
            f.visible = visible

    def _connect(self, client) -> None:
        r = ClientRenderer(client, self.field, self.settings)
        self.clients[client.client_id] = r
        c2w = self.field.meta.cameras["train"].c2w[0]
        target = self.focus if self.focus is not None else c2w[:3, 3] - c2w[:3, 2]
        with client.atomic():  # behind the first training camera, so that its frustum is in view, not in the way
            client.camera.position = target + START_BACK * (c2w[:3, 3] - target)
            client.camera.look_at = target
            client.camera.up_direction = self.up
        client.camera.on_update(lambda camera: r.move(View.of(camera)))
        r.start()

    def _disconnect(self, client) -> None:
        r = self.clients.pop(client.client_id, None)
        if r is not None:
            r.running = False

    def refresh(self) -> None:
        """Render every tab's view again (new output mode, resolution or parameters)."""
        for r in list(self.clients.values()):
            r.refresh()

    def say(self, text: str) -> None:
        self.status.content = text

    # ------------------------------------------------------------------------------------------ camera path
    def render_size(self) -> tuple[int, int]:
        train = self.field.meta.cameras["train"]
        return train.width, train.height

    def add_keyframe(self, view: View) -> None:
        """Append ``view`` to the path (at the render aspect) and redraw the path's preview in the scene."""
        w, h = self.render_size()
        self.keys.append(keyframes.Keyframe(np.asarray(view.c2w, np.float64), float(np.degrees(view.fov)), w / h))
        wxyz, pos = c2w_to_viser(view.c2w)
        scale = frustum_scale(self.field.meta.cameras["train"].c2w)
        name = f"/keyframes/{len(self.keys) - 1}"
        self.key_nodes[name] = self.server.scene.add_camera_frustum(
            name, fov=view.fov, aspect=w / h, scale=1.5 * scale, color=(255, 120, 0), wxyz=wxyz, position=pos)
        if len(self.keys) > 1:
            c2w, _ = keyframes.interpolate(self.keys, 20 * len(self.keys), float(self.smoothness.value))
            self.key_nodes["/keyframes/path"] = self.server.scene.add_spline_catmull_rom(
                "/keyframes/path", np.vstack([c2w[:, :3, 3], pos]), thickness=0.2 * scale, color=(255, 120, 0))
        self.say(f"{len(self.keys)} keyframe(s)")

    def clear_keyframes(self) -> None:
        self.keys = []
        for node in self.key_nodes.values():
            node.remove()
        self.key_nodes = {}
        self.say("no keyframes")

    def camera_path(self) -> dict:
        """The path as nerfstudio's ``camera_path.json`` dict (:func:`nerfkit.keyframes.camera_path_json`)."""
        w, h = self.render_size()
        return keyframes.camera_path_json(self.keys, w, h, fps=float(self.fps.value),
                                          transition=float(self.transition.value),
                                          smoothness=float(self.smoothness.value))

    def preview_at(self, t: float) -> None:
        """Move every tab's camera to fraction ``t`` of the path."""
        if len(self.keys) < 2:
            return
        path = self.camera_path()["camera_path"]
        frame = path[int(round(t * (len(path) - 1)))]
        c2w = np.reshape(frame["camera_to_world"], (4, 4))
        for r in list(self.clients.values()):
            with r.client.atomic():
                r.client.camera.position = c2w[:3, 3]
                r.client.camera.look_at = c2w[:3, 3] - c2w[:3, 2]
                r.client.camera.up_direction = c2w[:3, 1]
                r.client.camera.fov = float(np.radians(frame["fov"]))

    def save_path(self) -> Path | None:
        """Write the path to ``RUN_DIR/<File>`` (``camera_path.json``); None with fewer than two keyframes."""
        if len(self.keys) < 2:
            self.say("add at least two keyframes first")
            return None
        out = self.run_dir / Path(str(self.path_name.value)).name
        out.write_text(json.dumps(self.camera_path(), indent=1) + "\n")
        self.say(f"saved {out}")
        return out

    def render_path(self) -> list[str]:
        """Save the path, render it (:func:`render_camera_path`) to ``RUN_DIR/render/``; returns the videos."""
        out = self.save_path()
        if out is None or self.run is None:
            return []
        why = visualize.ffmpeg_missing()
        if why:
            self.say(f"cannot write videos without ffmpeg ({why}): pip install imageio-ffmpeg")
            return []
        self.say(f"rendering {out.name} ...")
        files = render_camera_path(self.run, json.loads(out.read_text()), self.run_dir / "render", out.stem)
        self.say("rendered " + ", ".join(Path(f).name for f in files))
        return files


def path_cameras(path: dict, base: Cameras) -> Cameras:
    """The frames of a ``camera_path.json`` dict as Cameras at its render size (vertical fov per frame)."""
    c2w, fov, w, h = keyframes.path_arrays(path)
    fy = (0.5 * h / np.tan(0.5 * np.radians(fov))).astype(np.float32)
    n = len(c2w)
    cams = Cameras(c2w=c2w, fx=fy, fy=fy, cx=np.full(n, w / 2, np.float32), cy=np.full(n, h / 2, np.float32),
                   width=w, height=h, ndc_near=base.ndc_near)
    if base.ndc_near is not None:  # the NDC projection needs the capture's focal length relative to the image
        cams = dataclasses.replace(cams, fx=np.full(n, base.fx[0] * w / base.width, np.float32),
                                   fy=np.full(n, base.fy[0] * h / base.height, np.float32))
    return cams


def render_camera_path(run: runs.Run, path: dict, out: Path, name: str) -> list[str]:
    """Render a ``camera_path.json`` dict to ``out/<name>_{rgb,depth,opacity}.mp4``; returns the files."""
    from nerfkit import video

    cams = path_cameras(path, run.meta.cameras["train"])
    videos = {kind: out / f"{name}_{kind}.mp4" for kind in video.KINDS}
    video.write_videos(run, cams, min(run.cfg.train.render_chunk, CHUNK), videos, fps=float(path["fps"]))
    return [str(f) for f in videos.values()]


def add_training_cameras(server, cams: Cameras, images, scale: float, max_cameras: int = 200) -> list:
    """The training cameras as frustums (every k-th of more than ``max_cameras``), with their thumbnails;
    returns their scene handles."""
    step = max(1, int(np.ceil(len(cams) / max_cameras)))
    handles = []
    for i in range(0, len(cams), step):
        wxyz, pos = c2w_to_viser(cams.c2w[i])
        fov = 2.0 * np.arctan(0.5 * cams.height / float(cams.fy[i]))
        handles.append(server.scene.add_camera_frustum(
            f"/training_cameras/{i}", fov=float(fov), aspect=cams.width / cams.height, scale=scale, wxyz=wxyz,
            position=pos, color=(60, 60, 200), image=None if images is None else images[i], format="jpeg"))
    return handles


def start(field: FieldRenderer, run_dir: Path, host: str = "127.0.0.1", port: int = 7007, images=None,
          settings: Settings | None = None, run: runs.Run | None = None) -> Viewer:
    """Start a viser server on ``host:port`` showing ``field``; prints its URL on stderr. Returns the app
    (``app.server.stop()`` ends it)."""
    import sys

    import viser

    server = viser.ViserServer(host=host, port=port, verbose=False)
    app = Viewer(server, field, run_dir, images=images, settings=settings, run=run)
    print(f"nerfkit viewer: http://{host}:{server.get_port()}", file=sys.stderr, flush=True)
    return app


def view(run_dir: Path, host: str = "127.0.0.1", port: int = 7007, max_side: int = 512) -> None:
    """``nerfkit view``: serve a fitted run until Ctrl-C."""
    run = runs.load_run(Path(run_dir))
    app = start(FieldRenderer.of_run(run), Path(run_dir), host, port, images=thumbnails(run),
                settings=Settings(max_side=max_side), run=run)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        app.server.stop()


class LiveViewer:
    """``fit --viewer``: the viewer on a field being fitted. :meth:`update` (every step; cheap) hands it a copy
    of the parameters at most every ``refresh_seconds`` while a browser tab is open; its tabs render in
    their threads at most ``duty`` of the time, at ``max_side`` pixels, so the step loop keeps its pace."""

    def __init__(self, app: Viewer, refresh_seconds: float = 5.0):
        self.app, self.refresh_seconds, self.last = app, refresh_seconds, 0.0

    @classmethod
    def start(cls, graphdef, sampler, params, sampler_state, run_dir: Path, host: str, port: int,
              duty: float = 0.05, max_side: int = 256) -> "LiveViewer":
        meta = runs.SceneMeta(Path(run_dir) / "scene.json")
        field = FieldRenderer(graphdef, sampler, _copy(params), _copy(sampler_state), meta)
        return cls(start(field, run_dir, host, port, settings=Settings(max_side=max_side, duty=duty)))

    def update(self, step: int, params, sampler_state) -> None:
        now = time.time()
        if not self.app.clients or now - self.last < self.refresh_seconds:
            return
        self.last = now
        self.app.field.set_params(_copy(params), _copy(sampler_state))  # the train step donates its inputs
        self.app.say(f"step {step}")
        self.app.refresh()

    def close(self) -> None:
        self.app.server.stop()


def _copy(tree):
    """A device copy of a pytree of arrays (so a later step's buffer donation cannot invalidate it)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, tree)
