"""Tests for nerfkit.fields: the NeRF MLP's shapes, ranges, parameter count and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nerfkit.config import FieldConfig
from nerfkit.encodings import encoding_dim
from nerfkit.fields import NeRFField

TINY = FieldConfig(depth=2, width=32, skips=(0,), pos_freqs=4, dir_freqs=2, view_width=16)


def _n_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out  # kernel + bias


@pytest.mark.parametrize("cfg", [
    TINY,  # a skip connection and the view-dependent branch
    FieldConfig(depth=2, width=32, skips=(), pos_freqs=4, use_viewdirs=False, activation="silu",
                density_activation="softplus", density_bias=-1.0),
])
def test_shapes_and_ranges(cfg):
    graphdef, params = nnx.split(NeRFField(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1.5, 1.5, (4, 5, 3)), jnp.float32)
    d = rng.normal(size=(4, 1, 3))
    d = jnp.asarray(d / np.linalg.norm(d, axis=-1, keepdims=True), jnp.float32)  # broadcast over samples
    sigma, rgb = jax.jit(lambda p, x, d: nnx.merge(graphdef, p)(x, d))(params, x, d)
    assert sigma.shape == (4, 5) and rgb.shape == (4, 5, 3)
    assert sigma.dtype == jnp.float32 and rgb.dtype == jnp.float32
    assert np.all(np.asarray(sigma) >= 0.0)
    assert np.all((np.asarray(rgb) > 0.0) & (np.asarray(rgb) < 1.0))


def test_paper_parameter_count():
    # The NeRF paper's MLP (fig. 7, reference code): positions encoded to 3 + 3*2*10 = 63 dims, directions to
    # 3 + 3*2*4 = 27; 8 trunk layers of 256 with the encoded position concatenated again after layer 4;
    # density head 256 -> 1; feature 256 -> 256; view branch 256 + 27 -> 128; colour 128 -> 3.
    pos, dirs = 63, 27
    assert encoding_dim(3, 10) == pos and encoding_dim(3, 4) == dirs
    expected = (
        _dense(pos, 256)             # layer 0:    16,384
        + 4 * _dense(256, 256)       # layers 1-4: 263,168
        + _dense(256 + pos, 256)     # layer 5:    81,920 (after the skip)
        + 2 * _dense(256, 256)       # layers 6-7: 131,584
        + _dense(256, 1)             # density:    257
        + _dense(256, 256)           # feature:    65,792
        + _dense(256 + dirs, 128)    # view:       36,352
        + _dense(128, 3)             # colour:     387
    )
    assert expected == 595_844
    field = nnx.eval_shape(lambda: NeRFField(FieldConfig(), rngs=nnx.Rngs(0)))  # shapes only, no init
    assert _n_params(field) == 595_844


def test_tiny_parameter_count():
    # TINY: positions 3 + 3*2*4 = 27, directions 3 + 3*2*2 = 15; trunk 27 -> 32, skip after layer 0
    # (32 + 27 = 59) -> 32; density 32 -> 1; feature 32 -> 32; view 32 + 15 -> 16; colour 16 -> 3.
    expected = _dense(27, 32) + _dense(59, 32) + _dense(32, 1) + _dense(32, 32) + _dense(32 + 15, 16) + _dense(16, 3)
    assert expected == 4724
    assert _n_params(nnx.eval_shape(lambda: NeRFField(TINY, rngs=nnx.Rngs(0)))) == expected
    # Without the view branch, colour comes from the trunk: 27 -> 32 -> 32, density 32 -> 1, colour 32 -> 3.
    plain = FieldConfig(depth=2, width=32, skips=(), pos_freqs=4, use_viewdirs=False)
    expected = _dense(27, 32) + _dense(32, 32) + _dense(32, 1) + _dense(32, 3)
    assert _n_params(nnx.eval_shape(lambda: NeRFField(plain, rngs=nnx.Rngs(0)))) == expected


def test_gradients_finite_under_jit():
    graphdef, params = nnx.split(NeRFField(TINY, rngs=nnx.Rngs(1)), nnx.Param)
    rng = np.random.default_rng(1)
    # Points from the centre to far outside the scene (large arguments of the encoding).
    x = jnp.asarray(rng.normal(scale=[[0.5], [5.0], [100.0]], size=(3, 3)), jnp.float32)
    d = jnp.asarray([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], jnp.float32)

    @jax.jit
    def loss(params, x):
        sigma, rgb = nnx.merge(graphdef, params)(x, d)
        return jnp.sum(sigma) + jnp.sum(rgb)

    value, (g_params, g_x) = jax.value_and_grad(loss, argnums=(0, 1))(params, x)
    assert np.isfinite(float(value))
    leaves = jax.tree.leaves(g_params)
    assert leaves and all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert np.all(np.isfinite(np.asarray(g_x)))
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_bfloat16_matmuls_keep_float32_outputs_close():
    """compute_dtype=bfloat16: matmuls in bf16 (same float32 parameters), integrator and outputs in float32."""
    from nerfkit.config import ModelConfig
    from nerfkit.model import NeRFModel, render_rays
    from nerfkit.types import Rays

    outs = {}
    for dtype in ("float32", "bfloat16"):
        small = FieldConfig(depth=2, width=32, view_width=16)
        model = NeRFModel(ModelConfig(coarse=small, fine=small, num_coarse=8, num_fine=8, compute_dtype=dtype),
                          rngs=nnx.Rngs(0))
        o = jnp.zeros((4, 3)).at[:, 2].set(4.0)
        d = jnp.array([[0.0, 0.0, -1.0], [0.1, 0.0, -1.0], [0.0, 0.2, -1.0], [0.3, 0.3, -1.0]])
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
        outs[dtype] = render_rays(model, Rays(o, d, d), jax.random.key(0), near=2.0, far=6.0,
                                  aabb=jnp.array([[-1.5] * 3, [1.5] * 3]), background=jnp.ones(3), randomized=False)
    assert outs["bfloat16"]["rgb"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(outs["bfloat16"]["rgb"]), np.asarray(outs["float32"]["rgb"]), atol=5e-2)  # bf16: 8-bit mantissa
