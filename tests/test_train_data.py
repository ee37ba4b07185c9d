"""Training data in bounded memory: 8-bit images on the device, rays made inside the step (issue 13, item 4).

The rays :meth:`TrainData.rays_at` makes from (level, image, row, column) must be those
:func:`nerfkit.cameras.all_rays` gives the same pixels (what the trainer held before), for pinhole, distorted,
NDC and multi-scale cameras; the targets must be the loaded premultiplied images.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from nerfkit import cameras as cam
from nerfkit import memory
from nerfkit.data.demo import make_demo_scene
from nerfkit.errors import InputError
from nerfkit.train_step import TrainData
from nerfkit.types import Cameras, Scene, SplitData, pixels_to_rgba

N, W, H = 3, 16, 12
RAYS_AT = jax.jit(TrainData.rays_at)


def _scene(distortion=False, ndc_near=None) -> Scene:
    rng = np.random.default_rng(0)
    base = make_demo_scene(width=W, height=H, n_train=N, n_val=0, n_test=0)
    cams = base.splits["train"].cameras
    if ndc_near is not None:  # forward-facing: one intrinsics for all, cameras near the origin looking down -z
        c2w = np.tile(np.eye(3, 4, dtype=np.float32), (N, 1, 1))
        c2w[:, :, 3] = rng.normal(size=(N, 3)) * 0.1
        f = np.full(N, 11.0, np.float32)
        cams = Cameras(c2w, f, f * 1.1, np.full(N, 7.5, np.float32), np.full(N, 6.5, np.float32), W, H,
                       ndc_near=ndc_near)
    else:
        cams = dataclasses.replace(cams, cx=cams.cx + rng.uniform(-1, 1, N).astype(np.float32))
    if distortion:
        cams = dataclasses.replace(cams, distortion=np.tile(np.float32([0.05, -0.01, 0.002, -0.001]), (N, 1)))
    split = dataclasses.replace(base.splits["train"], cameras=cams)
    return dataclasses.replace(base, splits={"train": split})


@pytest.mark.parametrize("kind", ["pinhole", "distorted", "ndc"])
def test_rays_made_in_the_step_are_the_loaded_cameras_rays(kind):
    scene = _scene(distortion=kind == "distorted", ndc_near=1.0 if kind == "ndc" else None)
    split = scene.splits["train"]
    data = TrainData.from_scene(scene)
    assert data.levels[0].dtype == np.uint8 and data.ndc_near == split.cameras.ndc_near
    rays, rgba = RAYS_AT(data, data.every_pixel())
    o, d = cam.all_rays(split.cameras)
    np.testing.assert_allclose(rays.origins, o.reshape(-1, 3), atol=1e-5)
    np.testing.assert_allclose(rays.directions, d.reshape(-1, 3), atol=1e-5)
    np.testing.assert_allclose(rays.viewdirs, d.reshape(-1, 3), atol=1e-5)  # as the trainer fed them before
    np.testing.assert_allclose(rays.radii, np.repeat(2 / np.sqrt(12) / split.cameras.fx, W * H), rtol=1e-6)
    np.testing.assert_array_equal(rays.image_ids, np.repeat(np.arange(N), W * H))
    np.testing.assert_allclose(rgba, split.rgba.reshape(-1, 4), atol=1e-7)


def test_multiscale_levels_are_the_scaled_cameras_rays_and_drawn_like_repeated_rays():
    scene = _scene()  # distortion is level-independent; the test above has it
    split = scene.splits["train"]
    data = TrainData.from_scene(scene, levels=3)
    idx = np.concatenate([np.asarray(data.every_pixel(k)) for k in range(3)])
    rays, rgba = RAYS_AT(data, idx)
    start = 0
    for k in range(3):
        cams = split.cameras.scaled(0.5 ** k) if k else split.cameras
        at = slice(start, start + N * cams.width * cams.height)
        start = at.stop
        o, d = cam.all_rays(cams)
        np.testing.assert_allclose(rays.origins[at], o.reshape(-1, 3), atol=1e-5)
        np.testing.assert_allclose(rays.directions[at], d.reshape(-1, 3), atol=1e-5)
        np.testing.assert_allclose(rays.radii[at], np.repeat(2 / np.sqrt(12) / cams.fx, cams.width * cams.height),
                                   rtol=1e-6)
        np.testing.assert_array_equal(rgba[at], pixels_to_rgba(np.asarray(data.levels[k])).reshape(-1, 4))
    # A random draw: every level equally often, every pixel of a level equally often (the old layout
    # repeated level k's rays 4^k times and drew uniformly).
    drawn = np.asarray(jax.jit(TrainData.draw, static_argnums=2)(data, jax.random.key(1), 60_000))
    counts = np.bincount(drawn[:, 0], minlength=3)
    assert np.abs(counts / len(drawn) - 1 / 3).max() < 0.01
    lvl2 = drawn[drawn[:, 0] == 2]
    assert lvl2[:, 2].max() == H // 4 - 1 and lvl2[:, 3].max() == W // 4 - 1
    cells = np.bincount((lvl2[:, 1] * (H // 4) + lvl2[:, 2]) * (W // 4) + lvl2[:, 3], minlength=N * H * W // 16)
    assert cells.min() > 0.7 * cells.mean() and cells.max() < 1.3 * cells.mean()


def test_loaders_hold_8_bit_images_and_targets_are_the_files(tmp_path):
    """The Blender loader keeps the PNG's own bytes (uint8, 4 a pixel); the float view is today's."""
    import imageio.v3 as iio

    from nerfkit.data.blender import load_blender
    from nerfkit.data.demo import write_blender
    from nerfkit.data.images import read_rgba

    write_blender(make_demo_scene(width=8, height=8, n_train=2, n_val=1, n_test=0), tmp_path)
    scene = load_blender(tmp_path)
    train = scene.splits["train"]
    assert train.pixels.dtype == np.uint8 and train.pixels.nbytes == 2 * 8 * 8 * 4
    np.testing.assert_array_equal(train.pixels[1], iio.imread(tmp_path / "train" / "r_1.png"))
    np.testing.assert_allclose(train.image(1), read_rgba(tmp_path / "train" / "r_1.png"), atol=1e-7)
    np.testing.assert_allclose(train.composite(np.ones(3), 1), train.composite(np.ones(3))[1])
    assert TrainData.image_bytes(train, 2) == 2 * (64 + 16) * 4


def test_fit_refuses_training_data_that_does_not_fit(monkeypatch):
    from nerfkit import fit, parallel

    scene = make_demo_scene(width=16, height=16, n_train=4, n_val=0, n_test=0)
    mesh = parallel.make_mesh(1)
    line = fit.check_memory(scene, 1, mesh)
    assert line.startswith("training data: 0.00 GiB of 8-bit images") and "on the host" in line
    monkeypatch.setattr(memory, "host_available", lambda: 1000)  # 4 x 16 x 16 x 4 = 4096 bytes needed
    with pytest.raises(InputError, match=r"\[--data.downscale\]: the training images need .* has 0.00 GiB free"):
        fit.check_memory(scene, 1, mesh)
    with pytest.raises(InputError, match=r"\[downscale\]: 4 images at 16x16 need"):
        from nerfkit.data.images import pixel_array

        pixel_array(4, 16, 16)


def test_split_from_float_rounds_to_8_bits():
    rgba = np.random.default_rng(0).uniform(size=(2, 4, 4, 4)).astype(np.float32)
    rgba[..., :3] *= rgba[..., 3:]  # premultiplied
    split = SplitData.from_rgba(None, rgba, ("a", "b"))
    assert len(split) == 2 and split.pixels.dtype == np.uint8
    assert np.abs(split.rgba - rgba).max() <= 1 / 255
