"""nerfstudio's camera_path.json: reading what its viewer writes, keyframe interpolation, the world frame, and
the path every render writes beside its videos."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cli.main import main as cli_main
from nerfkit import camera_path_file, runs
from nerfkit.cameras import look_at
from nerfkit.data.nerfstudio import read_poses
from nerfkit.errors import InputError
from nerfkit.video import render_path


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)
    return float("inf") if mse == 0 else float(-10 * np.log10(mse))


def _frames(out: Path) -> np.ndarray:
    return np.stack([iio.imread(p) for p in sorted((out / "frames").glob("*.png"))])


def _flat(c2w) -> list:
    m = np.eye(4)
    m[:3, :4] = c2w
    return m.reshape(-1).tolist()


def _nerfstudio_frame(c2w_file: np.ndarray) -> np.ndarray:
    """nerfstudio's data parser (orientation 'up', centre 'poses', auto scale), written out independently of
    nerfkit.frames: the similarity [4, 4] from the transforms.json world to nerfstudio's."""
    t = c2w_file[:, :3, 3].mean(0)
    up = c2w_file[:, :3, 1].mean(0)
    a, b = up / np.linalg.norm(up), np.array([0.0, 0.0, 1.0])
    v, c = np.cross(a, b), a @ b
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    r = np.eye(3) + k + k @ k * ((1 - c) / (np.linalg.norm(v) ** 2 + 1e-8))
    oriented = (c2w_file[:, :3, 3] - t) @ r.T
    s = 1.0 / np.abs(oriented).max()
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = s * r, -s * r @ t
    return m


def _viewer_json(c2w_ns: np.ndarray, fov: float, size=(16, 16), **top) -> dict:
    """A camera path exactly as nerfstudio's viewer writes it (render_panel.py's _write_json): keyframes and
    every frame, flattened row-major 4x4 poses, vertical fov in degrees."""
    w, h = size
    keys = [{"matrix": _flat(m), "fov": fov, "aspect": w / h, "override_transition_enabled": False,
             "override_transition_sec": None} for m in c2w_ns]
    doc = {"default_fov": fov, "default_transition_sec": 2.0, "keyframes": keys, "camera_type": "perspective",
           "render_height": h, "render_width": w, "fps": 30.0, "seconds": 2.0 * (len(c2w_ns) - 1),
           "is_cycle": False, "smoothness_value": 0.5,
           "camera_path": [{"camera_to_world": _flat(m), "fov": fov, "aspect": w / h} for m in c2w_ns]}
    doc.update(top)
    return doc


@pytest.fixture(scope="module")
def test_render(tiny_nerfstudio_run, tmp_path_factory) -> tuple[Path, np.ndarray]:
    out = tmp_path_factory.mktemp("test_render")
    render_path(tiny_nerfstudio_run, path="test", out=out, pngs=True, video=False)
    return out, _frames(out)


def test_a_nerfstudio_viewer_path_through_the_test_cameras_renders_the_test_views(
        tiny_nerfstudio_run, tiny_nerfstudio_dir, test_render, tmp_path):
    # The test cameras as nerfstudio sees them: the transforms.json poses of views 0 and 8 (the loader's hold-out)
    # moved into nerfstudio's data-parser frame, computed here from nerfstudio's rules, not nerfkit's code.
    c2w_file = read_poses(tiny_nerfstudio_dir / "transforms.json")
    m = _nerfstudio_frame(c2w_file)
    c2w_ns = np.stack([np.concatenate([m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3])) @ c[:, :3],
                                       (m[:3, :3] @ c[:, 3] + m[:3, 3])[:, None]], 1) for c in c2w_file[[0, 8]]])
    test = runs.SceneMeta(tiny_nerfstudio_run / "scene.json").cameras["test"]
    fov = float(np.degrees(2 * np.arctan(8 / test.fy[0])))
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps(_viewer_json(c2w_ns, fov)))
    res = render_path(tiny_nerfstudio_run, path=str(path), out=tmp_path / "out", pngs=True, video=False)
    assert res["frames"] == 2 and res["size"] == [16, 16]
    frames = _frames(tmp_path / "out")
    assert frames.std() > 5  # the scene, not a blank image
    for a, b in zip(frames, test_render[1]):
        assert _psnr(a, b) > 40.0


def test_every_render_writes_its_camera_path_and_it_renders_the_same_frames(tiny_nerfstudio_run, test_render,
                                                                               tmp_path):
    out, frames = test_render
    written = out / "test_camera_path.json"
    doc = json.loads(written.read_text())
    assert doc["camera_type"] == "perspective" and (doc["render_width"], doc["render_height"]) == (16, 16)
    assert len(doc["camera_path"]) == 2 and len(doc["camera_path"][0]["camera_to_world"]) == 16
    again = render_path(tiny_nerfstudio_run, path=str(written), out=tmp_path / "again", pngs=True, video=False)
    assert (tmp_path / "again" / "test_camera_path_camera_path.json").is_file()
    assert again["size"] == [16, 16]
    for a, b in zip(_frames(tmp_path / "again"), frames):
        assert _psnr(a, b) > 40.0
    # Round trip of the poses: written in nerfstudio's frame, read back into the scene frame.
    cams = camera_path_file.to_cameras(camera_path_file.read(written),
                                       runs.SceneMeta(tiny_nerfstudio_run / "scene.json").path_to_scene)
    test = runs.SceneMeta(tiny_nerfstudio_run / "scene.json").cameras["test"]
    np.testing.assert_allclose(cams.c2w, test.c2w, atol=1e-5)
    np.testing.assert_allclose(cams.fy, test.fy, rtol=1e-5)


def test_non_perspective_camera_paths_are_refused_in_one_line(tiny_nerfstudio_run, tmp_path, capsys):
    path = tmp_path / "fisheye.json"
    path.write_text(json.dumps(_viewer_json(np.eye(4)[None, :3], 50.0, camera_type="fisheye")))
    capsys.readouterr()
    assert cli_main(["render", str(tiny_nerfstudio_run), "--path", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nerfkit: error: ") and "fisheye" in err[0] and "camera_type" in err[0]


# ---------------------------------------------------------------------------------------------- keyframes
def _arc_keys(k=5):
    az = np.radians(50.0) * np.arange(k)
    eyes = np.stack([4 * np.cos(az), 4 * np.sin(az), 1.0 + 0.5 * (-1.0) ** np.arange(k)], -1)
    return np.stack([look_at(e, np.zeros(3), (0.0, 0.0, 1.0)) for e in eyes])


def _angles(a, b):
    return np.degrees(np.arccos(np.clip((np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("tension", [0.0, 0.5])
def test_keyframe_only_paths_pass_through_the_keyframes_smoothly(tmp_path, tension):
    keys = _arc_keys()
    doc = _viewer_json(keys, 50.0, smoothness_value=tension, camera_path=[])
    doc["keyframes"][2]["fov"] = 30.0
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(doc))
    cp = camera_path_file.read(path)
    assert cp.c2w.shape == (int(30 * 8.0), 3, 4)  # fps * seconds
    # 241 frames over 4 transitions of 2 s: every 60th frame is on the next keyframe, exactly.
    exact, _ = camera_path_file.keyframe_path(keys, [50.0] * 5, [2.0] * 4, 241, tension=tension)
    np.testing.assert_allclose(exact[::60], keys, atol=1e-12)
    np.testing.assert_allclose(cp.c2w[[0, -1]], keys[[0, -1]], atol=1e-9)
    # Smooth: no jumps in position or rotation from frame to frame, speed changing gradually.
    step = np.linalg.norm(np.diff(cp.c2w[:, :, 3], axis=0), axis=1)
    assert step.max() < 3 * np.median(step)
    assert np.abs(np.diff(step)).max() < 0.1 * step.max()
    turn = _angles(cp.c2w[1:, :, :3], cp.c2w[:-1, :, :3])
    assert turn.max() < 3 * np.median(turn)
    r = cp.c2w[:, :, :3]
    np.testing.assert_allclose(np.swapaxes(r, 1, 2) @ r, np.broadcast_to(np.eye(3), r.shape), atol=1e-6)
    assert cp.fov.min() == pytest.approx(30.0, abs=0.5) and cp.fov[0] == pytest.approx(50.0)


def test_closed_keyframe_paths_loop_without_a_seam(tmp_path):
    keys = _arc_keys(4)
    doc = _viewer_json(keys, 50.0, is_cycle=True, camera_path=[], seconds=8.0)
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(doc))
    cp = camera_path_file.read(path)
    assert len(cp.c2w) == 240
    pos = np.concatenate([cp.c2w[:, :, 3], cp.c2w[:1, :, 3]])  # around the seam and back to the start
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert step.max() < 3 * np.median(step) and step[-1] > 0


def test_invalid_camera_paths_name_the_field(tmp_path):
    cases = {
        "render_width": lambda d: d.pop("render_width"),
        "camera_path[0].camera_to_world": lambda d: d["camera_path"][0].update(camera_to_world=[1.0] * 16),
        "camera_path[0].fov": lambda d: d["camera_path"][0].update(fov=200.0),
        "camera_type": lambda d: d.update(camera_type="equirectangular"),
    }
    for field, edit in cases.items():
        doc = _viewer_json(_arc_keys(2), 50.0)
        edit(doc)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(InputError) as e:
            camera_path_file.read(path)
        assert f"[{field}]" in str(e.value), field
