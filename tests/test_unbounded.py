"""Unbounded scenes: mip-NeRF 360 contraction, inverse-depth sampling, the 360-degree procedural scene."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import sampling
from nerfkit.model import contract


def test_contraction_identity_inside_and_bounded_outside():
    rng = np.random.default_rng(0)
    inside = rng.uniform(-1, 1, (1000, 3)) * 0.57  # |x| < 1
    np.testing.assert_allclose(contract(jnp.asarray(inside, jnp.float32)), inside, atol=1e-6)
    r = np.geomspace(1.0, 1e6, 200)
    d = rng.normal(size=(200, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    y = np.asarray(contract(jnp.asarray(d * r[:, None], jnp.float32)))
    ny = np.linalg.norm(y, axis=-1)
    # Analytic: |contract(x)| = 2 - 1/|x| along the same direction, so everything lands in the radius-2 ball.
    np.testing.assert_allclose(ny, 2 - 1 / r, rtol=1e-5)
    np.testing.assert_allclose(y / ny[:, None], d, atol=1e-5)
    assert np.all(ny < 2.0) and np.all(np.diff(ny) > -1e-6)


def test_contraction_radius_scales_the_foreground():
    x = jnp.asarray([[3.0, 0.0, 0.0], [8.0, 0.0, 0.0]])
    np.testing.assert_allclose(contract(x, radius=4.0), [[0.75, 0, 0], [1.5, 0, 0]], atol=1e-6)


def test_contraction_gradients_finite_and_continuous():
    f = jax.jit(jax.vmap(jax.jacfwd(lambda x: contract(x))))
    pts = jnp.asarray([[0.0, 0.0, 0.0], [1e-7, 0, 0], [0.999999, 0, 0], [1.000001, 0, 0], [1e8, 1, 0]], jnp.float32)
    jac = np.asarray(f(pts))
    assert np.all(np.isfinite(jac))
    # C1 at |x| = 1: the Jacobian is the identity on both sides of the sphere.
    np.testing.assert_allclose(jac[2], np.eye(3), atol=1e-4)
    np.testing.assert_allclose(jac[3], np.eye(3), atol=1e-4)


def test_lindisp_strata_are_even_in_inverse_depth():
    t = sampling.stratified(None, 0.5, 1000.0, (2,), 16, randomized=False, lindisp=True)
    inv = 1.0 / np.asarray(t)
    np.testing.assert_allclose(np.diff(inv, axis=-1), (1 / 1000.0 - 1 / 0.5) / 16, rtol=1e-4)
    tr = np.asarray(sampling.stratified(jax.random.key(0), 0.5, 1000.0, (64,), 16, randomized=True, lindisp=True))
    assert np.all(np.diff(tr, axis=-1) >= 0) and tr.min() >= 0.5 - 1e-5 and tr.max() <= 1000.0 * (1 + 1e-5)


def test_contraction_requires_hierarchical_sampler():
    from flax import nnx

    from nerfkit.config import ModelConfig
    from nerfkit.errors import InputError
    from nerfkit.model import NeRFModel

    with pytest.raises(InputError, match="hierarchical"):
        NeRFModel(ModelConfig(sampler="occupancy", contraction=True), rngs=nnx.Rngs(0))


def test_unbounded_scene_sees_both_near_objects_and_the_far_dome():
    from nerfkit.data.unbounded import CAMERA_RADIUS, SKY_RADIUS, make_unbounded_scene, sky_rgb

    scene = make_unbounded_scene(width=16, height=16, n_train=8, n_test=2)
    rgba = scene.splits["train"].rgba
    assert rgba.shape == (8, 16, 16, 4) and np.all(rgba[..., 3] == 1.0)
    centres = scene.splits["train"].cameras.c2w[:, :, 3]
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), CAMERA_RADIUS, rtol=1e-5)
    # Cameras all around: azimuths spread over the full circle.
    az = np.sort(np.arctan2(centres[:, 1], centres[:, 0]))
    assert np.max(np.diff(np.concatenate([az, az[:1] + 2 * np.pi]))) < np.pi / 2
    # The dome's colour depends on the direction only (it is far): nearly the same from two origins.
    d = np.asarray([[0.0, 0.6, 0.8], [0.8, 0.0, 0.6]], np.float32)
    a, b = sky_rgb(np.zeros(3), d), sky_rgb(np.asarray([CAMERA_RADIUS, 0, 0]), d)
    assert SKY_RADIUS / CAMERA_RADIUS > 10 and np.max(np.abs(a - b)) < 0.3
