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


def test_interpolate_path():
    keys = _sphere_cameras(n=4)[:3]
    path = camera_paths.interpolate_path(keys, 9)
    assert path.shape == (9, 3, 4)
    np.testing.assert_array_equal(path[0], keys[0])
    np.testing.assert_array_equal(path[-1], keys[-1])
    np.testing.assert_array_equal(path[4], keys[1])
    rot = path[:, :, :3].astype(np.float64)
    np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    # Midpoint rotation is halfway: equal angle to both neighbours.
    def angle(a, b):
        return np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))
    assert angle(rot[2], keys[0, :, :3]) == pytest.approx(angle(rot[2], keys[1, :, :3]), abs=1e-4)


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
