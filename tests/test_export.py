"""``nerfkit export``: marching cubes on an analytic sphere, meshes / point clouds / cameras in the data's own
world frame (a nerfstudio capture whose world is neither nerfkit's scene frame nor nerfstudio's)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from cli.main import main as cli_main
from nerfkit import export, integrator, runs
from nerfkit.cameras import image_rays
from nerfkit.data.common import normalising_transform
from nerfkit.data.nerfstudio import read_poses
from nerfkit.frames import apply_to_points

from .conftest import file_from_demo


def _sphere_sigma(x, centre, radius):
    """A density that is 2.5 exactly on the sphere, rising steeply inside it."""
    d = np.linalg.norm(np.asarray(x) - centre, axis=-1)
    return 2.5 * np.exp(np.clip(8.0 * (radius - d) / radius, -30, 30))


def test_marching_cubes_of_a_sphere_finds_its_radius_with_outward_normals():
    centre, radius = np.array([0.3, -0.2, 0.1]), 0.6
    box = np.array([centre - 1.0, centre + 1.5])  # not centred on the sphere, not cubic along z
    box[1, 2] = centre[2] + 0.9
    axes = export.grid_axes(box, 64)
    voxel = export.voxel_size(box, 64)
    assert [len(a) for a in axes] == [64, 64, 48] and np.allclose(np.diff(axes[2]), voxel)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    verts, faces, normals = export.marching_cubes(_sphere_sigma(grid, centre, radius), axes, 2.5)
    r = np.linalg.norm(verts - centre, axis=1)
    assert len(faces) > 1000
    assert abs(r.mean() - radius) < 0.1 * voxel and np.abs(r - radius).max() < 0.5 * voxel
    assert np.min(np.sum(normals * (verts - centre) / r[:, None], axis=1)) > 0.95


@pytest.fixture(scope="module")
def sphere_field(tiny_nerfstudio_dir):
    """An analytic field for the tiny run (monkeypatched into nerfkit.export): a sphere of radius 1 around the
    demo scene's origin as it lies in the capture's file frame, coloured by its outward direction in the file frame."""
    m = file_from_demo()
    centre_file, radius_file = m[:3, 3], 1.0
    to_scene = normalising_transform(read_poses(tiny_nerfstudio_dir / "transforms.json"))  # the loader's rule
    s = np.cbrt(np.linalg.det(to_scene[:3, :3]))
    centre, radius = jnp.asarray(apply_to_points(to_scene, centre_file), jnp.float32), float(s * radius_file)
    scene_to_file_rot = jnp.asarray((to_scene[:3, :3] / s).T, jnp.float32)

    def query_fn(run, density_only):
        def fn(params, origins, directions, t):
            x = origins[:, None, :] + t[..., None] * directions[:, None, :]
            d = jnp.linalg.norm(x - centre, axis=-1)
            sigma = 2.5 * jnp.exp(jnp.clip(8.0 * (radius - d) / radius, -30, 30))
            if density_only:
                return sigma
            out = ((x - centre) / d[..., None]) @ scene_to_file_rot.T
            return sigma, 0.5 + 0.5 * out
        return fn

    return centre_file, radius_file, query_fn


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_is_written_in_the_data_frame_with_the_fields_colours(tiny_nerfstudio_run, sphere_field, tmp_path,
                                                                   monkeypatch, suffix):
    centre, radius, query_fn = sphere_field
    monkeypatch.setattr(export, "_query_fn", query_fn)
    out = tmp_path / f"mesh{suffix}"
    bbox = np.concatenate([centre - 1.5, centre + 1.5])  # in the file frame
    res = export.export_mesh(tiny_nerfstudio_run, out, resolution=48, bbox=bbox)
    assert res["grid"] == [48, 48, 48] and res["voxel"] == pytest.approx(3.0 / 47)
    mesh = trimesh.load(out, force="mesh", process=False)
    assert len(mesh.vertices) == res["vertices"] and len(mesh.faces) == res["faces"] > 1000
    r = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.abs(r - radius).max() < 0.5 * res["voxel"]
    if suffix == ".ply":  # colours: the field's at each vertex, seen along its normal
        expected = 255 * (0.5 + 0.5 * (mesh.vertices - centre) / r[:, None])
        assert np.abs(mesh.visual.vertex_colors[:, :3] - expected).max() < 0.05 * 255


def test_default_mesh_box_is_the_scene_box_in_the_data_frame(tiny_nerfstudio_run):
    run = runs.load_run(tiny_nerfstudio_run)
    box = export.default_box(run)
    corners = np.stack(np.meshgrid(*run.meta.aabb.T, indexing="ij"), -1).reshape(-1, 3)
    in_file = apply_to_points(np.linalg.inv(run.meta.file_to_scene), corners)
    np.testing.assert_allclose(box, [in_file.min(0), in_file.max(0)], atol=1e-5)


def test_cameras_are_exported_as_the_files_poses(tiny_nerfstudio_run, tiny_nerfstudio_dir, tmp_path, capsys):
    assert cli_main(["export", "cameras", str(tiny_nerfstudio_run), "--out", str(tmp_path)]) == 0
    assert "12 frames" in capsys.readouterr().out
    doc = json.loads((tmp_path / "transforms.json").read_text())
    original = json.loads((tiny_nerfstudio_dir / "transforms.json").read_text())
    poses = dict(zip([f["file_path"] for f in original["frames"]], read_poses(tiny_nerfstudio_dir / "transforms.json")))
    assert sorted(f["file_path"] for f in doc["frames"]) == sorted(poses)
    for f in doc["frames"]:
        np.testing.assert_allclose(np.asarray(f["transform_matrix"])[:3], poses[f["file_path"]], atol=1e-5)
        assert (f["fl_x"], f["cx"], f["w"], f["h"]) == pytest.approx((original["fl_x"], original["cx"], 16, 16))
    assert sorted(doc["test_filenames"]) == ["images/f_00.png", "images/f_08.png"]


def test_point_cloud_points_lie_on_the_training_rays_in_the_data_frame(tiny_nerfstudio_run, tiny_nerfstudio_dir,
                                                                       tmp_path):
    res = export.export_pointcloud(tiny_nerfstudio_run, tmp_path / "points.ply", depth="expected", min_opacity=0.0,
                                   max_views=1)
    cloud = trimesh.load(tmp_path / "points.ply")
    assert len(cloud.vertices) == res["points"] > 100 and res["candidates"] <= 256
    assert cloud.colors.shape == (res["points"], 4)
    # Every point projects onto a pixel centre of the first training view's camera, as the file has it.
    meta = runs.SceneMeta(tiny_nerfstudio_run / "scene.json")
    name = meta.names["train"][0]
    original = json.loads((tiny_nerfstudio_dir / "transforms.json").read_text())
    c2w = read_poses(tiny_nerfstudio_dir / "transforms.json")[[f["file_path"] for f in original["frames"]].index(name)]
    cam = (cloud.vertices - c2w[:, 3]) @ c2w[:, :3]
    assert np.all(cam[:, 2] < 0)
    px = original["fl_x"] * cam[:, 0] / -cam[:, 2] + original["cx"]
    py = -original["fl_y"] * cam[:, 1] / -cam[:, 2] + original["cy"]
    np.testing.assert_allclose(np.stack([px, py], 1) % 1.0, 0.5, atol=1e-2)


def _analytic_pixels(query_fn, samples=1024):
    """A stand-in for :func:`export.opaque_pixels` that volume renders the analytic field (every training view,
    dense quadrature; computed once), so the expected depths are the analytic field's own."""
    memo = {}

    def render(o, d, far):
        t = jnp.broadcast_to(jnp.linspace(0.0, far, samples + 1), (o.shape[0], samples + 1))
        sigma, rgb = query_fn(None, False)(None, o, d, 0.5 * (t[:, 1:] + t[:, :-1]))
        out = integrator.volume_render(sigma, rgb, t, jnp.ones(3))
        return out.opacity, out.depth, out.rgb

    def pixels(run, min_opacity, max_views, chunk):
        if not memo:
            cams = run.meta.cameras["train"]
            rays = [image_rays(cams, i, np) for i in range(len(cams))]
            o = np.concatenate([r.origins.reshape(-1, 3) for r in rays])
            d = np.concatenate([r.directions.reshape(-1, 3) for r in rays])
            opacity, depth, rgb = jax.jit(render)(o, d, 2.0 * float(np.linalg.norm(o, axis=1).max()))
            keep = np.asarray(opacity) > min_opacity
            memo.update(origins=o[keep], directions=d[keep], depth=np.asarray(depth)[keep], rgb=np.asarray(rgb)[keep])
        return dict(memo)

    return pixels


def test_point_cloud_lies_on_the_density_surface_where_expected_depths_do_not(tiny_nerfstudio_run, sphere_field,
                                                                              tmp_path, monkeypatch):
    centre, radius, query_fn = sphere_field   # a sphere whose density crosses 2.5 exactly at its radius
    monkeypatch.setattr(export, "_query_fn", query_fn)
    monkeypatch.setattr(export, "opaque_pixels", _analytic_pixels(query_fn))
    off = {}
    for depth in ("surface", "expected"):
        res = export.export_pointcloud(tiny_nerfstudio_run, tmp_path / f"{depth}.ply", depth=depth, std_ratio=10.0)
        r = np.linalg.norm(trimesh.load(tmp_path / f"{depth}.ply").vertices - centre, axis=1)
        assert res["points"] == len(r) > 100 and res["no_surface"] == 0
        off[depth] = np.abs(r - radius) / radius
    print({k: (float(np.median(v)), float(v.max())) for k, v in off.items()})
    assert off["surface"].max() < 1e-3
    assert np.median(off["expected"]) > 0.03


def test_outliers_far_from_the_rest_are_removed():
    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.normal(size=(500, 3)) * 0.05, rng.uniform(2, 3, size=(5, 3))])
    keep = export.outlier_mask(pts)
    assert not keep[-5:].any() and keep[:-5].mean() > 0.95


def test_export_errors_are_one_line(tiny_nerfstudio_run, tmp_path, capsys):
    cases = {
        "unknown command": (["export", "voxels", str(tiny_nerfstudio_run)], "voxels"),
        "mesh format": (["export", "mesh", str(tiny_nerfstudio_run), "--out", str(tmp_path / "m.stl")], ".stl"),
        "empty box": (["export", "mesh", str(tiny_nerfstudio_run), "--resolution", "8", "--bbox", "0", "0", "0",
                       "1", "1", "-1"], "--bbox"),
    }
    for name, (args, must) in cases.items():
        capsys.readouterr()
        assert cli_main(args) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nerfkit: error: ") and must in err[0], (name, err)
