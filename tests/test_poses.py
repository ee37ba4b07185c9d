"""Camera-pose refinement (``--model.pose-refine``): the SE(3) corrections of nerfkit.poses, learned in the
train step, saved with the run; and (slow) recovering a known perturbation of a procedural capture's poses."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nerfkit import cameras as cam
from nerfkit import poses, runs, samplers
from nerfkit.config import FieldConfig, ModelConfig, TrainConfig
from nerfkit.data.demo import make_demo_scene
from nerfkit.fit import fit
from nerfkit.model import build_model
from nerfkit.train_step import TrainData, learning_rate, make_optimizer, make_train_step
from nerfkit.types import Bounds, Cameras

from .conftest import tiny_fit_config, tiny_model


def _random_deltas(n: int, degrees: float, shift: float, seed: int = 1) -> np.ndarray:
    """float32 [n, 6] corrections: rotations of exactly ``degrees`` about random axes, shifts of length ``shift``."""
    rng = np.random.default_rng(seed)
    w, t = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    w *= np.radians(degrees) / np.linalg.norm(w, axis=1, keepdims=True)
    t *= shift / np.linalg.norm(t, axis=1, keepdims=True)
    return np.concatenate([w, t], axis=1).astype(np.float32)


def _pose_error(c2w: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(mean rotation error in degrees, mean camera-centre distance) of poses against the true ones."""
    r = np.einsum("nij,nkj->nik", c2w[:, :, :3], true[:, :, :3])
    cos = np.clip((np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean()), float(np.linalg.norm(c2w[:, :, 3] - true[:, :, 3], axis=1).mean())


def _moved(cams: Cameras, delta: np.ndarray) -> Cameras:
    c2w = np.asarray(poses.apply_to_c2w(jnp.asarray(delta), jnp.asarray(cams.c2w)), np.float32)
    return dataclasses.replace(cams, c2w=c2w)


# ------------------------------------------------------------------------------------------------ math
def test_exp_is_a_rigid_motion_and_moves_rays_as_the_refined_cameras_cast_them():
    delta = _random_deltas(5, 20.0, 0.3)
    r = np.asarray(poses.so3_exp(jnp.asarray(delta[:, :3])), np.float64)
    assert np.allclose(r @ np.swapaxes(r, 1, 2), np.eye(3), atol=1e-5) and np.allclose(np.linalg.det(r), 1.0, atol=1e-5)
    angle = np.degrees(np.arccos((np.trace(r, axis1=1, axis2=2) - 1) / 2))
    assert np.allclose(angle, 20.0, atol=1e-3)  # |w| radians about w
    assert np.allclose(np.einsum("nij,nj->ni", r, delta[:, :3]), delta[:, :3], atol=1e-6)  # w is the axis
    scene = make_demo_scene(width=6, height=4, n_train=5, n_val=0, n_test=0)
    cams = scene.splits["train"].cameras
    o, d = cam.all_rays(cams)
    per_ray = np.broadcast_to(delta[:, None, None], (*o.shape[:3], 6))
    o2, d2 = poses.apply_to_rays(jnp.asarray(per_ray), jnp.asarray(o), jnp.asarray(d))
    o3, d3 = cam.all_rays(_moved(cams, delta))  # the refined cameras' own rays
    assert np.allclose(o2, o3, atol=1e-5) and np.allclose(d2, d3, atol=1e-5)


def test_refined_ndc_rays_are_the_ndc_rays_of_the_refined_cameras():
    n, w, h = 3, 8, 6
    c2w = np.asarray(_moved(Cameras(np.tile(np.eye(3, 4, dtype=np.float32), (n, 1, 1)), *[np.zeros(n, np.float32)] * 4,
                                    w, h), _random_deltas(n, 3.0, 0.1, seed=2)).c2w)
    f = np.full(n, 7.0, np.float32)
    cams = Cameras(c2w, f, f, np.full(n, 4.0, np.float32), np.full(n, 3.0, np.float32), w, h, ndc_near=1.0)
    scene = make_demo_scene(width=w, height=h, n_train=n, n_val=0, n_test=0)
    split = dataclasses.replace(scene.splits["train"], cameras=cams)
    scene = dataclasses.replace(scene, splits={"train": split})
    world, ndc = TrainData.from_scene(scene, world_rays=True), TrainData.from_scene(scene)
    assert world.ndc == (7.0, 7.0, 4.0, 3.0, w, h, 1.0) and ndc.ndc is None
    assert world.ndc_near is None and ndc.ndc_near == 1.0
    delta = _random_deltas(n, 2.0, 0.05)
    rays, _ = world.rays_at(world.every_pixel())
    out = poses.refine_rays(rays, jnp.asarray(delta)[rays.image_ids], world.ndc)
    o, d = cam.all_rays(_moved(cams, delta))
    assert np.allclose(out.origins, o.reshape(-1, 3), atol=1e-4) and np.allclose(out.directions, d.reshape(-1, 3), atol=1e-4)
    zero = poses.refine_rays(rays, jnp.zeros((len(rays.image_ids), 6)), world.ndc)  # no correction: as loaded
    loaded, _ = ndc.rays_at(ndc.every_pixel())
    assert np.allclose(zero.origins, loaded.origins, atol=1e-5) and np.allclose(zero.directions, loaded.directions, atol=1e-5)


# ------------------------------------------------------------------------------------------ train step
def test_gradients_reach_the_pose_corrections_under_jit():
    scene = make_demo_scene(width=12, height=12, n_train=4, n_val=0, n_test=0)
    cfg = dataclasses.replace(tiny_model(), pose_refine=True)
    graphdef, params = build_model(cfg, 0, scene.aabb, num_images=4)
    assert params["pose_corrections"][...].shape == (4, 6) and not np.any(params["pose_corrections"][...])
    tcfg = TrainConfig(batch_rays=64, lr_init=1e-2, pose_lr=1e-3)
    tx = make_optimizer(tcfg, pose_refine=True)
    sampler = samplers.build(cfg, Bounds.of(scene.near, scene.far, scene.aabb), tcfg)
    step = make_train_step(graphdef, tx, sampler, batch_rays=64, background="white", seed=0)
    before = jax.tree.map(np.asarray, params)
    new, _, m = step(params, tx.init(params), 0, 1e-2, TrainData.from_scene(scene, world_rays=True), sampler.init_state())
    delta = np.asarray(new["pose_corrections"][...])
    assert np.all(np.isfinite(delta)) and np.isfinite(float(m["loss"]))
    # Adam's first step moves every coordinate with a gradient by the learning rate: pose_lr for the poses
    # (not the field's lr), so each image's correction moved by 1e-3 in all six numbers.
    assert np.allclose(np.abs(delta), 1e-3, rtol=1e-3), delta
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), new["coarse"], before["coarse"])
    assert np.isclose(max(jax.tree.leaves(moved)), 1e-2, rtol=1e-3)  # the field at its own rate


def test_without_pose_refinement_there_are_no_corrections():
    scene = make_demo_scene(width=8, height=8, n_train=3, n_val=0, n_test=0)
    _, params = build_model(tiny_model(), 0, scene.aabb, num_images=3)
    assert "pose_corrections" not in params
    # The optimiser state keeps its layout (Adam's alone), so runs from before pose refinement still resume.
    assert jax.tree.structure(make_optimizer(TrainConfig()).init(params)) == jax.tree.structure(
        optax.chain(optax.scale_by_adam()).init(params))


def test_checkpoints_keep_the_corrections_and_resume_exactly(tmp_path, tiny_blender_dir):
    def cfg(out, steps, resume=False):
        # A constant rate: `steps` also sets the decay (see tests/test_fit.py).
        c = tiny_fit_config(out, tiny_blender_dir, resume=resume, steps=steps, lr_init=1e-3, lr_final=1e-3,
                            pose_lr=1e-2)
        return dataclasses.replace(c, model=dataclasses.replace(c.model, pose_refine=True))

    fit(cfg(tmp_path / "whole", 8))
    fit(cfg(tmp_path / "halves", 4))
    fit(cfg(tmp_path / "halves", 8, resume=True))
    whole, halves = runs.load_run(tmp_path / "whole"), runs.load_run(tmp_path / "halves")
    delta = np.asarray(whole.params["pose_corrections"][...])
    assert delta.shape == (8, 6) and np.abs(delta).max() > 1e-3  # learned, saved and restored
    assert np.allclose(delta, halves.params["pose_corrections"][...], atol=1e-6)
    fit(tiny_fit_config(tmp_path / "plain", tiny_blender_dir, steps=2))  # runs without corrections still load
    assert "pose_corrections" not in runs.load_run(tmp_path / "plain").params


# ----------------------------------------------------------------------------------- recovering poses
def _fit_steps(graphdef, params, sampler, data, tcfg, steps):
    tx = make_optimizer(tcfg, pose_refine=True)
    step = make_train_step(graphdef, tx, sampler, batch_rays=tcfg.batch_rays, background="white", seed=tcfg.seed)
    opt_state, state = tx.init(params), sampler.init_state()
    for k in range(steps):
        params, opt_state, _ = step(params, opt_state, k, learning_rate(tcfg, k, k / steps), data, state)
    return params


@pytest.mark.slow
def test_pose_refinement_undoes_a_perturbation_of_the_training_poses():
    # A small hash field fitted to the procedural scene on the true poses (the corrections' learning rate
    # 0); then every training pose is moved by 3 degrees and 0.1 units (cameras are 4 away) and fitting goes
    # on with the field nearly frozen and the corrections learning. ~3 minutes on a loaded 2-core CPU.
    scene = make_demo_scene(width=32, height=32, n_train=12, n_val=0, n_test=0)
    train = scene.splits["train"]
    field = FieldConfig(encoding="hash", depth=1, width=32, skips=(), view_width=32, dir_freqs=2,
                        density_activation="exp", hash_levels=8, hash_features=2, hash_log2_size=14, hash_min_res=8,
                        hash_max_res=128)
    cfg = ModelConfig(coarse=field, num_coarse=32, num_fine=0, clip_to_aabb=True, pose_refine=True)
    graphdef, params = build_model(cfg, 0, scene.aabb, num_images=len(train))
    tcfg = TrainConfig(batch_rays=512, lr_init=1e-2, lr_final=1e-3, adam_eps=1e-15, pose_lr=0.0)
    sampler = samplers.build(cfg, Bounds.of(scene.near, scene.far, scene.aabb), tcfg)
    params = _fit_steps(graphdef, params, sampler, TrainData.from_scene(scene, world_rays=True), tcfg, 300)
    assert not np.any(params["pose_corrections"][...])

    moved = _moved(train.cameras, _random_deltas(len(train), 3.0, 0.1))
    perturbed = dataclasses.replace(scene, splits={"train": dataclasses.replace(train, cameras=moved)})
    true = train.cameras.c2w
    rot0, shift0 = _pose_error(moved.c2w, true)
    assert np.isclose(rot0, 3.0, atol=1e-3)
    tcfg = dataclasses.replace(tcfg, lr_init=1e-4, lr_final=1e-4, pose_lr=1e-3)
    refined = _fit_steps(graphdef, params, sampler, TrainData.from_scene(perturbed, world_rays=True), tcfg, 300)
    delta = np.asarray(refined["pose_corrections"][...])
    rot, shift = _pose_error(np.asarray(poses.apply_to_c2w(jnp.asarray(delta), jnp.asarray(moved.c2w))), true)
    assert rot < 0.5 * rot0 and shift < 0.5 * shift0, (rot0, rot, shift0, shift)
