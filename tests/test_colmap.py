"""Tests for nerfkit.data.colmap: COLMAP pose conventions, model import, structure from motion on rendered
views, video frame sampling, and the `nerfkit data colmap` error path."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfkit.cameras import all_rays, focal_from_fov, look_at
from nerfkit.data import demo
from nerfkit.data.colmap import (colmap_to_opengl_c2w, extract_video_frames, import_colmap_model, qvec_to_rotmat,
                                 run_colmap)
from nerfkit.data.images import area_downscale
from nerfkit.data.nerfstudio import load_nerfstudio
from nerfkit.errors import InputError
from nerfkit.types import Cameras

pycolmap = pytest.importorskip("pycolmap")


# ------------------------------------------------------------------------------------------------ helpers
def _rotmat_to_qvec(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (Shepperd's method), written independently of qvec_to_rotmat."""
    m = np.asarray(r, np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2 * np.sqrt(tr + 1)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = np.zeros(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q, np.float64)
    return q if q[0] >= 0 else -q


def _colmap_pose(c2w_gl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP (qvec, tvec) of an OpenGL camera-to-world: by hand, through the OpenCV camera frame."""
    c2w_cv = np.asarray(c2w_gl, np.float64)[:3, :4].copy()
    c2w_cv[:, 1:3] *= -1
    r = c2w_cv[:, :3].T
    return _rotmat_to_qvec(r), -r @ c2w_cv[:, 3]


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |s R src_i + t - dst_i|^2 (Umeyama 1991)."""
    ms, md = src.mean(0), dst.mean(0)
    xs, xd = src - ms, dst - md
    u, sig, vt = np.linalg.svd(xd.T @ xs / len(src))
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2, 2] = -1
    rot = u @ d @ vt
    s = np.trace(np.diag(sig) @ d) / xs.var(0).sum()
    return s, rot, md - s * rot @ ms


def _angle_deg(r: np.ndarray) -> np.ndarray:
    """Rotation angles in degrees of float [..., 3, 3] rotations."""
    return np.degrees(np.arccos(np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


# -------------------------------------------------------------------------------------------- conventions
def test_pose_conversion_by_hand():
    # COLMAP identity rotation, t = (0, 0, 5): the camera sits at world (0, 0, -5) and looks down world +z.
    c2w = colmap_to_opengl_c2w([1, 0, 0, 0], [0, 0, 5])
    np.testing.assert_allclose(c2w, [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, -5]], atol=1e-12)
    # a quarter turn about the camera's z axis: qvec (cos 45, 0, 0, sin 45)
    r = qvec_to_rotmat([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(r, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_pose_conversion_round_trip_and_projection():
    """Random OpenGL poses -> COLMAP (qvec, tvec) by hand -> colmap_to_opengl_c2w is the identity, and a
    world point projected by COLMAP's K [R | t] lies on nerfkit's ray through that pixel."""
    rng = np.random.default_rng(0)
    w, h, f = 40, 30, 35.0
    k = np.array([[f, 0, 21.0], [0, f * 1.1, 14.0], [0, 0, 1]])
    for _ in range(5):
        eye = rng.normal(size=3) * 3
        target = rng.normal(size=3) * 0.3
        c2w = look_at(eye, target, up=rng.normal(size=3)).astype(np.float64)
        q, t = _colmap_pose(c2w)
        np.testing.assert_allclose(colmap_to_opengl_c2w(q, t), c2w, atol=1e-6)
        x_world = target + rng.normal(size=3) * 0.1
        uvw = k @ (qvec_to_rotmat(q) @ x_world + t)
        u, v = uvw[:2] / uvw[2]
        assert 0 <= u < w and 0 <= v < h
        # nerfkit's ray through the pixel (i, j) whose centre is nearest, then moved to (u, v) exactly
        cams = Cameras(c2w=colmap_to_opengl_c2w(q, t)[None].astype(np.float32), fx=np.float32([k[0, 0]]),
                       fy=np.float32([k[1, 1]]), cx=np.float32([k[0, 2] - (u - (np.floor(u) + 0.5))]),
                       cy=np.float32([k[1, 2] - (v - (np.floor(v) + 0.5))]), width=w, height=h)
        o, d = all_rays(cams)
        o, d = o[0, int(v), int(u)].astype(np.float64), d[0, int(v), int(u)].astype(np.float64)
        off = (x_world - o) - np.dot(x_world - o, d) * d
        assert np.linalg.norm(off) < 1e-4 * np.linalg.norm(x_world - o)


# ------------------------------------------------------------------------------------------- text import
def _write_text_model(sparse: Path, images: Path, model="PINHOLE", params=(50.0, 52.0, 32.0, 24.0), n_points=12):
    """A hand-written COLMAP text model of 3 cameras looking at the origin, with points and tracks.

    Returns the OpenGL c2w [3, 3, 4] of the three images (in the model's world).
    """
    sparse.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    w, h = 64, 48
    eyes = [(4.0, 0.5, 1.0), (0.3, 4.0, 1.5), (-3.5, -1.5, 2.0)]
    c2ws = np.stack([look_at(e, (0, 0, 0), (0, 0, 1)).astype(np.float64) for e in eyes])
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.5, 0.5, (n_points, 3))
    fx, fy, cx, cy = (params[0], params[0], params[1], params[2]) if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL") \
        else params[:4]
    (sparse / "cameras.txt").write_text("# Camera list with one line of data per camera:\n"
                                        f"1 {model} {w} {h} {' '.join(map(str, params))}\n")
    lines = ["# Image list with two lines of data per image:"]
    for i, c2w in enumerate(c2ws):
        q, t = _colmap_pose(c2w)
        r = qvec_to_rotmat(q)
        obs = []
        for j, p in enumerate(pts):
            x = r @ p + t
            obs += [fx * x[0] / x[2] + cx, fy * x[1] / x[2] + cy, j + 1]
        lines.append(f"{i + 1} {' '.join(f'{v:.17g}' for v in (*q, *t))} 1 img_{i}.png")
        lines.append(" ".join(f"{v:.6f}" if k % 3 < 2 else str(int(v)) for k, v in enumerate(obs)))
        iio.imwrite(images / f"img_{i}.png", np.full((h, w, 3), 60 * i, np.uint8))
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    pl = ["# 3D point list with one line of data per point:"]
    for j, p in enumerate(pts):
        track = " ".join(f"{i + 1} {j}" for i in range(3))
        pl.append(f"{j + 1} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g} 128 128 128 0.5 {track}")
    (sparse / "points3D.txt").write_text("\n".join(pl) + "\n")
    return c2ws, pts


def test_import_text_model(tmp_path):
    c2ws, pts = _write_text_model(tmp_path / "sparse", tmp_path / "imgs")
    res = import_colmap_model(tmp_path / "sparse", tmp_path / "imgs", tmp_path / "out")
    assert (res.registered, res.total, res.camera_model) == (3, 3, "PINHOLE")
    meta = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert (meta["camera_model"], meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], meta["w"], meta["h"]) == \
        ("PINHOLE", 50.0, 52.0, 32.0, 24.0, 64, 48)
    assert [f["file_path"] for f in meta["frames"]] == [f"images/img_{i}.png" for i in range(3)]
    for f, c2w in zip(meta["frames"], c2ws):
        np.testing.assert_allclose(np.asarray(f["transform_matrix"])[:3], c2w, atol=1e-6)
        np.testing.assert_allclose(np.asarray(f["transform_matrix"])[3], [0, 0, 0, 1])
    lo, hi = np.asarray(meta["aabb"])
    assert np.all(lo < pts.min(0) + 0.05) and np.all(hi > pts.max(0) - 0.05)
    assert (tmp_path / "out" / "images" / "img_2.png").is_file()
    # the loader reads it: one camera per image, three views; rotations as in the model, levelled
    scene = load_nerfstudio(tmp_path / "out")
    views = {n: c for s in scene.splits.values() for n, c in zip(s.names, s.cameras.c2w)}
    assert sorted(views) == [f"images/img_{i}.png" for i in range(3)]
    m = scene.file_to_scene
    rot = m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3]))
    for i in range(3):
        np.testing.assert_allclose(views[f"images/img_{i}.png"][:, :3], rot @ c2ws[i][:, :3], atol=1e-6)
    np.testing.assert_allclose(rot @ c2ws[:, :, 1].mean(0) / np.linalg.norm(c2ws[:, :, 1].mean(0)), [0, 0, 1],
                               atol=1e-6)


def test_import_then_load_holds_out_every_8th_image_in_name_order(tmp_path):
    # A real capture without named splits (what colmap / colmap-import write): the LLFF protocol, every 8th
    # image in file-name order is a test view, whatever order the model lists its images in.
    sparse, images, n, (w, h) = tmp_path / "sparse", tmp_path / "imgs", 17, (32, 24)
    sparse.mkdir()
    images.mkdir()
    (sparse / "cameras.txt").write_text(f"1 PINHOLE {w} {h} 30 30 16 12\n")
    lines = []
    for k, i in enumerate(np.random.default_rng(0).permutation(n)):  # image ids unrelated to the names
        a = 2 * np.pi * i / n
        q, t = _colmap_pose(look_at((4 * np.cos(a), 4 * np.sin(a), 1.0), (0, 0, 0), (0, 0, 1)))
        lines += [f"{k + 1} {' '.join(f'{v:.17g}' for v in (*q, *t))} 1 img_{i:02d}.png", ""]
        iio.imwrite(images / f"img_{i:02d}.png", np.full((h, w, 3), 10 * i, np.uint8))
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    (sparse / "points3D.txt").write_text("")
    import_colmap_model(sparse, images, tmp_path / "out")
    scene = load_nerfstudio(tmp_path / "out")
    assert set(scene.splits) == {"train", "test"}
    assert scene.splits["test"].names == ("images/img_00.png", "images/img_08.png", "images/img_16.png")
    assert scene.splits["train"].names == tuple(f"images/img_{i:02d}.png" for i in range(n) if i % 8)


def test_import_radial_model_becomes_opencv(tmp_path):
    _write_text_model(tmp_path / "sparse", tmp_path / "imgs", model="SIMPLE_RADIAL", params=(50.0, 32.0, 24.0, -0.05))
    res = import_colmap_model(tmp_path / "sparse", tmp_path / "imgs", tmp_path / "out")
    assert res.camera_model == "OPENCV"
    meta = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert (meta["fl_x"], meta["fl_y"], meta["k1"], meta["k2"], meta["p1"], meta["p2"]) == (50.0, 50.0, -0.05, 0, 0, 0)
    cams = load_nerfstudio(tmp_path / "out").splits["train"].cameras
    np.testing.assert_allclose(cams.distortion[:, 0], -0.05, rtol=1e-6)


def test_import_binary_model(tmp_path):
    _write_text_model(tmp_path / "sparse", tmp_path / "imgs")
    rec = pycolmap.Reconstruction(tmp_path / "sparse")
    (tmp_path / "bin").mkdir()
    rec.write_binary(tmp_path / "bin")
    assert (tmp_path / "bin" / "images.bin").is_file()
    res = import_colmap_model(tmp_path / "bin", tmp_path / "imgs", tmp_path / "out")
    assert res.registered == 3


def test_import_errors(tmp_path):
    with pytest.raises(InputError, match="model folder not found"):
        import_colmap_model(tmp_path / "nope", tmp_path, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a COLMAP sparse model"):
        import_colmap_model(tmp_path / "empty", tmp_path, tmp_path / "out")
    _write_text_model(tmp_path / "fish", tmp_path / "imgs", model="OPENCV_FISHEYE",
                      params=(50.0, 52.0, 32.0, 24.0, 0.1, 0.0, 0.0, 0.0))
    with pytest.raises(InputError) as info:
        import_colmap_model(tmp_path / "fish", tmp_path / "imgs", tmp_path / "out")
    msg = str(info.value)
    assert "OPENCV_FISHEYE" in msg and "[camera 1]" in msg and "cameras.txt" in msg and "\n" not in msg
    _write_text_model(tmp_path / "ok", tmp_path / "imgs2")
    (tmp_path / "imgs2" / "img_1.png").unlink()
    with pytest.raises(InputError, match="img_1.png"):
        import_colmap_model(tmp_path / "ok", tmp_path / "imgs2", tmp_path / "out2")


# ------------------------------------------------------------------------------------ structure from motion
BACKDROP_RADIUS = 6.0


def _hash(c: np.ndarray, salt: int) -> np.ndarray:
    h = (c[:, 0] * 73856093) ^ (c[:, 1] * 19349663) ^ (c[:, 2] * 83492791) ^ salt
    h = (h * 2654435761) & 0xFFFFFFFF
    h ^= h >> 13
    return (h * 1274126177) & 0xFFFFFFFF


def _backdrop(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """float32 [R, 3]: an emissive sphere of radius 6 around the scene, seen from inside, covered in random
    discs of three sizes (one per cubic cell, random centre, radius and colour) on a smooth gradient: texture
    without repetition, so SIFT finds distinctive features everywhere."""
    o = np.broadcast_to(np.asarray(o, np.float64), d.shape)
    b = np.sum(o * d, -1)
    t = -b + np.sqrt(b * b - (np.sum(o * o, -1) - BACKDROP_RADIUS ** 2))
    p = o + t[:, None] * d
    out = 0.5 + 0.25 * np.sin(p @ np.array([[0.7, 0.2, -0.4], [-0.3, 0.6, 0.5], [0.4, -0.5, 0.8]]).T)
    for cell, salt in ((1.6, 11), (0.8, 29), (0.4, 47)):
        c = np.floor(p / cell).astype(np.int64)
        h, h2 = _hash(c, salt), _hash(c, salt + 7)
        u = lambda hh, k: ((hh >> (4 * k)) & 255) / 255.0  # noqa: E731
        r = cell * (0.15 + 0.3 * u(h, 0))
        centre = (c + 0.5) * cell + (cell / 2 - r)[:, None] * (2 * np.stack([u(h, 1), u(h, 2), u(h, 3)], -1) - 1)
        inside = np.sum((p - centre) ** 2, -1) < r * r
        out = np.where(inside[:, None], np.stack([u(h2, 0), u(h2, 2), u(h2, 4)], -1), out)
    return out.astype(np.float32)


def _matte_primitives() -> list:
    """The demo arrangement with matte materials (view-independent colours: what SfM assumes), textures
    shifted off the cell boundaries that coincide with faces (those alias into view-dependent speckle)."""
    prims = demo.demo_primitives()
    for p in prims:
        tex = p.material.texture
        p.material = demo.Material(lambda q, tex=tex: tex(q + 0.013), ks=0.0)
    return prims


def _orbit_cameras(n: int, size: int) -> Cameras:
    """``n`` cameras on a closed loop around the scene (distance 2.7-3.9, elevation 23-47 degrees, in waves:
    varied distances pin down the focal length), 60-degree field of view, looking slightly below the origin."""
    az = np.linspace(0, 2 * np.pi, n, endpoint=False)
    el = np.radians(35 + 12 * np.sin(2 * az))
    radius = 3.3 + 0.6 * np.sin(3 * az)
    eyes = radius[:, None] * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    c2w = np.stack([look_at(e, (0, 0, -0.2), (0, 0, 1)) for e in eyes])
    f = np.full(n, focal_from_fov(size, 1.05), np.float32)
    half = np.full(n, size / 2, np.float32)
    return Cameras(c2w=c2w.astype(np.float32), fx=f, fy=f.copy(), cx=half, cy=half.copy(), width=size, height=size)


def _render(cams: Cameras, supersample: int = 1) -> np.ndarray:
    """uint8 [N, H, W, 3]: the matte demo objects in front of the backdrop."""
    prims = _matte_primitives()
    fine = cams.scaled(supersample)
    out = np.empty((len(cams), cams.height, cams.width, 3), np.uint8)
    for v in range(len(cams)):
        o, d = demo.view_rays(fine, v)
        rgba = demo.render_rays(prims, o, d)
        rgb = rgba[:, :3] + (1 - rgba[:, 3:]) * _backdrop(o, d)
        rgb = area_downscale(rgb.reshape(fine.height, fine.width, 3), supersample)
        out[v] = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def orbit_views(tmp_path_factory):
    """36 views at 256x256 of the matte demo scene in its backdrop, as view_XXX.png; (folder, cameras)."""
    root = tmp_path_factory.mktemp("orbit") / "photos"
    root.mkdir()
    cams = _orbit_cameras(36, 256)
    for i, img in enumerate(_render(cams)):
        iio.imwrite(root / f"view_{i:03d}.png", img)
    return root, cams


def test_run_colmap_recovers_the_poses(orbit_views, tmp_path):
    photos, gt = orbit_views
    out = tmp_path / "capture"
    lines = []
    res = run_colmap(photos, out, log=lines.append)
    assert any("registered" in s for s in lines)
    assert res.total == 36 and res.registered >= 0.9 * 36, res
    meta = json.loads((out / "transforms.json").read_text())
    assert len(meta["frames"]) == res.registered and "aabb" in meta
    idx = [int(Path(f["file_path"]).stem.split("_")[1]) for f in meta["frames"]]
    est = np.asarray([f["transform_matrix"] for f in meta["frames"]], np.float64)[:, :3]
    ref = gt.c2w[idx].astype(np.float64)
    s, rot, t = _umeyama(est[:, :, 3], ref[:, :, 3])
    rot_err = _angle_deg(np.einsum("nji,njk->nik", ref[:, :, :3], rot @ est[:, :, :3]))
    pos_err = np.linalg.norm(s * est[:, :, 3] @ rot.T + t - ref[:, :, 3], axis=1)
    print(f"registered {res.registered}/36, rotation error max {rot_err.max():.3f} mean {rot_err.mean():.3f} deg, "
          f"centre error max {pos_err.max():.4f} (radius 3.3), focal {meta['fl_x']:.1f} (true {gt.fx[0]:.1f})")
    assert rot_err.max() < 1.0, rot_err
    assert pos_err.max() < 0.05 * 3.3, pos_err
    assert abs(meta["fl_x"] / gt.fx[0] - 1) < 0.05
    # nerfkit reads it: the registered images, one every 8th held out
    scene = load_nerfstudio(out)
    assert sum(len(s) for s in scene.splits.values()) == res.registered
    assert scene.splits["train"].rgba.shape[1:] == (256, 256, 4)
    assert np.linalg.norm(scene.splits["train"].cameras.c2w[:, :, 3], axis=1).max() == pytest.approx(1.0, rel=1e-5)


def test_run_colmap_too_few_registered(tmp_path):
    rng = np.random.default_rng(0)
    photos = tmp_path / "noise"
    photos.mkdir()
    for i in range(4):  # unrelated noise images: nothing matches
        iio.imwrite(photos / f"n_{i}.png", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    with pytest.raises(InputError) as info:
        run_colmap(photos, tmp_path / "out", log=lambda s: None)
    msg = str(info.value)
    assert "registered only 0 of 4" in msg and "overlap" in msg and "sequential" in msg and "\n" not in msg
    assert not (tmp_path / "out" / "transforms.json").exists()


def test_run_colmap_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        run_colmap(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        run_colmap(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "mixed").mkdir()
    iio.imwrite(tmp_path / "mixed" / "a.png", np.zeros((8, 8, 3), np.uint8))
    iio.imwrite(tmp_path / "mixed" / "b.png", np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(InputError, match="b.png.*10x8"):
        run_colmap(tmp_path / "mixed", tmp_path / "out")
    with pytest.raises(InputError, match="matcher"):
        run_colmap(tmp_path / "mixed", tmp_path / "out", matcher="vocab")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="video"):
        run_colmap(tmp_path / "notes.txt", tmp_path / "out")


def test_extract_video_frames(tmp_path):
    frames = np.zeros((20, 32, 48, 3), np.uint8)
    for i in range(20):
        frames[i, :, 2 * i: 2 * i + 4] = 255  # a bar moving right
    video = tmp_path / "clip.mp4"
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(video), (48, 32), fps=10, macro_block_size=16)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    out = extract_video_frames(video, tmp_path / "frames", fps=5, log=lambda s: None)
    assert 9 <= len(out) <= 11  # 2 s at 5 fps
    img = iio.imread(out[0])
    assert img.shape == (32, 48, 3)
    everything = extract_video_frames(video, tmp_path / "all", log=lambda s: None)  # default: <= native rate
    assert 18 <= len(everything) <= 20
    with pytest.raises(InputError, match="fps"):
        extract_video_frames(video, tmp_path / "x", fps=0)


def test_cli_missing_directory_is_one_line(tmp_path, capsys):
    from cli.main import main

    rc = main(["data", "colmap", str(tmp_path / "missing"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("nerfkit: error: ") and "missing" in err
    rc = main(["data", "colmap-import", str(tmp_path / "missing"), str(tmp_path), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing" in err
    assert main(["data", "unknown"]) == 2
