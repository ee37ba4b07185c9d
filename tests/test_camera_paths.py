"""Tests for nerfkit.camera_paths."""

import json

import numpy as np
import pytest

from nerfkit import camera_paths
from nerfkit.cameras import look_at
from nerfkit.errors import InputError


def _sphere_cameras(radius=4.0, elev_deg=30.0, n=12):
    el = np.radians(elev_deg)
    poses = []
    for k in range(n):
        az = 2 * np.pi * k / n + 0.3
        eye = radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        poses.append(look_at(eye, np.zeros(3), (0.0, 0.0, 1.0)))
    return np.stack(poses)


def test_orbit_on_sphere():
    train = _sphere_cameras()
    path = camera_paths.orbit_path(train, n_frames=36)
    assert path.shape == (36, 3, 4) and path.dtype == np.float32
    eyes = path[:, :, 3].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(eyes, axis=-1), 4.0, atol=1e-4)
    elev = np.degrees(np.arcsin(eyes[:, 2] / np.linalg.norm(eyes, axis=-1)))
    np.testing.assert_allclose(elev, 30.0, atol=1e-3)
    # Every frame looks at the origin and is upright.
    fwd = -path[:, :, 2]
    to_centre = -eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.sum(fwd * to_centre, -1), 1.0, atol=1e-5)
    assert np.all(path[:, 2, 1] > 0.8)  # camera +y has a large +z component
    np.testing.assert_allclose(np.cross(path[:, :, 0], path[:, :, 1]), path[:, :, 2], atol=1e-5)
    # Distinct frames, evenly spaced in azimuth, a full turn without repeating the first one.
    az = np.unwrap(np.arctan2(eyes[:, 1], eyes[:, 0]))
    np.testing.assert_allclose(np.diff(az), 2 * np.pi / 36, atol=1e-4)
    assert np.linalg.norm(eyes[0] - eyes[-1]) > 0.1


def test_orbit_defaults_helpers():
    train = _sphere_cameras(n=8)
    train[:, :, 3] += np.array([1.0, -2.0, 0.5])  # shift the whole rig
    np.testing.assert_allclose(camera_paths.focus_point(train), [1.0, -2.0, 0.5], atol=1e-4)
    np.testing.assert_array_equal(camera_paths.mean_up(train), [0.0, 0.0, 1.0])
    # Forward-facing (parallel axes) -> ill-conditioned -> None.
    ff = np.stack([look_at((x, 0.0, 5.0), (x, 0.0, 0.0), (0.0, 1.0, 0.0)) for x in (-1.0, 0.0, 1.0)])
    assert camera_paths.focus_point(ff) is None


def test_orbit_of_a_ring_at_height_h_stays_at_h_and_looks_at_the_centre():
    # A ring of cameras 1.5 above c at horizontal distances 2 and 4 in turn, all looking at c. The orbit keeps
    # their mean height and mean horizontal distance (not their mean distance and mean elevation angle, which
    # would put it at 1.63).
    c, h = np.array([1.0, -2.0, 0.5]), 1.5
    az = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    rad = np.where(np.arange(10) % 2 == 0, 2.0, 4.0)
    train = np.stack([look_at(c + (r * np.cos(a), r * np.sin(a), h), c, (0.0, 0.0, 1.0)) for a, r in zip(az, rad)])
    path = camera_paths.orbit_path(train, n_frames=24).astype(np.float64)
    eyes = path[:, :, 3] - c
    np.testing.assert_allclose(eyes[:, 2], h, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(eyes[:, :2], axis=-1), 3.0, atol=1e-4)
    to_c = -eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.sum(-path[:, :, 2] * to_c, -1), 1.0, atol=1e-5)


def _arc_keyframes(k=8, step_deg=40.0):
    """Cameras on an arc (radius 4, heights zigzagging between 0.7 and 1.3), each looking at the origin, z up."""
    az = np.radians(step_deg) * np.arange(k)
    eyes = np.stack([4 * np.cos(az), 4 * np.sin(az), 1.0 + 0.3 * (-1.0) ** np.arange(k)], -1)
    return np.stack([look_at(e, np.zeros(3), (0.0, 0.0, 1.0)) for e in eyes])


def _angle(a, b):
    return np.arccos(np.clip((np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2, -1, 1))


def test_interpolate_passes_through_the_keyframes_in_order():
    keys = _arc_keyframes()
    per = 20
    path = camera_paths.interpolate_path(keys, per * (len(keys) - 1) + 1)
    np.testing.assert_array_equal(path[::per], keys)  # keyframe k is frame 20 k, bit for bit
    rot = path[:, :, :3].astype(np.float64)
    np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    # Any frame count: the path starts and ends on the first and last keyframes and passes near each one.
    path = camera_paths.interpolate_path(keys, 50).astype(np.float64)
    np.testing.assert_array_equal(path[[0, -1]], keys[[0, -1]])
    d = np.linalg.norm(path[:, None, :, 3] - keys[None, :, :, 3], axis=-1)  # [frames, keys]
    nearest = np.argmin(d, axis=0)
    assert np.all(np.diff(nearest) > 0)  # visited in order
    assert d.min(axis=0).max() < np.linalg.norm(np.diff(path[:, :, 3], axis=0), axis=-1).max()


def _angular_velocity(c2w):
    """World-frame rotation vector from each frame to the next, float64 [N - 1, 3] (small angles)."""
    r = c2w[:, :, :3]
    rel = np.swapaxes(r[:-1], -1, -2) @ r[1:]
    w = np.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], -1) / 2
    return np.einsum("nij,nj->ni", r[:-1], w)


def test_interpolate_is_smooth():
    # No jumps in velocity or angular velocity at the keyframes. Linear interpolation with slerp (what
    # interpolate_path did before) kinks there: its largest second difference is 0.79 of a mean step and its
    # angular velocity changes by 0.38 of its mean; the splines' figures are 0.07 and 0.09.
    keys = _arc_keyframes()
    path = camera_paths.interpolate_path(keys, 20 * (len(keys) - 1) + 1).astype(np.float64)
    first = np.linalg.norm(np.diff(path[:, :, 3], axis=0), axis=-1)
    second = np.linalg.norm(np.diff(path[:, :, 3], n=2, axis=0), axis=-1)
    assert second.max() < 0.15 * first.mean(), (second.max(), first.mean())
    w = _angular_velocity(path)
    dw = np.linalg.norm(np.diff(w, axis=0), axis=-1)
    assert dw.max() < 0.15 * np.linalg.norm(w, axis=-1).mean(), (dw.max(), np.linalg.norm(w, axis=-1).mean())


def test_interpolate_two_cameras():
    keys = np.stack([look_at((0.0, 0.0, 3.0), np.zeros(3), (0.0, 1.0, 0.0)),
                     look_at((3.0, 1.0, 1.0), np.zeros(3), (0.0, 1.0, 0.0))])
    path = camera_paths.interpolate_path(keys, 9).astype(np.float64)
    np.testing.assert_array_equal(path[[0, -1]], keys)
    # A straight line at constant speed, and a constant-rate rotation from one to the other (slerp).
    np.testing.assert_allclose(path[:, :, 3], np.linspace(keys[0, :, 3], keys[1, :, 3], 9), atol=1e-5)
    total = _angle(keys[0, :, :3], keys[1, :, :3])
    np.testing.assert_allclose(_angle(keys[0, :, :3][None], path[:, :, :3]), np.linspace(0, total, 9), atol=1e-5)
    np.testing.assert_array_equal(camera_paths.interpolate_path(keys[:1], 3), np.repeat(keys[:1], 3, 0))


def test_interpolate_path_follows_capture_order(tmp_path):
    # The render path sorts the training cameras by image name (naturally: r_2 before r_10), whatever order
    # the split has them in.
    from nerfkit import runs, video
    from nerfkit.types import Cameras, Scene, SplitData

    keys = _arc_keyframes(k=11, step_deg=20.0)
    shuffled = np.random.default_rng(0).permutation(11)
    n = 11
    cams = Cameras(c2w=keys[shuffled].astype(np.float32), fx=np.full(n, 10.0, np.float32), fy=np.full(n, 10.0, np.float32),
                   cx=np.full(n, 4.0, np.float32), cy=np.full(n, 4.0, np.float32), width=8, height=8)
    split = SplitData(cameras=cams, pixels=np.zeros((n, 8, 8, 4), np.uint8), names=tuple(f"r_{i}.png" for i in shuffled))
    scene = Scene(splits={"train": split}, near=1.0, far=6.0, aabb=np.array([[-1.0] * 3, [1.0] * 3]), source="test")
    from nerfkit.config import FitConfig

    runs.save_scene_meta(scene, FitConfig(), tmp_path / "scene.json")
    path, name = video.path_cameras(runs.SceneMeta(tmp_path / "scene.json"), "interpolate", 3 * 10 + 1)
    assert name == "interpolate" and len(path) == 31
    np.testing.assert_allclose(path.c2w[::3], keys, atol=1e-6)


def test_quaternion_roundtrip():
    rots = _sphere_cameras(n=7)[:, :, :3].astype(np.float64)
    q = camera_paths.rotation_to_quaternion(rots)
    np.testing.assert_allclose(camera_paths.quaternion_to_rotation(q), rots, atol=1e-6)


def test_load_path_json(tmp_path):
    keys = _sphere_cameras(n=3)
    frames = [{"transform_matrix": np.vstack([k, [0, 0, 0, 1]]).tolist()} for k in keys]
    good = tmp_path / "path.json"
    good.write_text(json.dumps({"frames": frames}))
    np.testing.assert_allclose(camera_paths.load_path_json(good), keys, atol=1e-6)

    cases = {
        "missing.json": None,
        "bad.json": "{not json",
        "noframes.json": json.dumps({"camera": []}),
        "shape.json": json.dumps({"frames": [{"transform_matrix": [[1, 0], [0, 1]]}]}),
        "scaled.json": json.dumps({"frames": [{"transform_matrix": (2 * np.eye(4)).tolist()}]}),
        "nokey.json": json.dumps({"frames": [{"file_path": "x"}]}),
    }
    for name, text in cases.items():
        p = tmp_path / name
        if text is not None:
            p.write_text(text)
        with pytest.raises(InputError) as info:
            camera_paths.load_path_json(p)
        msg = str(info.value)
        assert name in msg and "\n" not in msg
        if name in ("shape.json", "scaled.json", "nokey.json"):
            assert "frames[0].transform_matrix" in msg
