"""Tests for nerfkit.fields: the NeRF MLP's shapes, ranges, parameter count and gradients."""

from __future__ import annotations

import dataclasses

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


@pytest.mark.slow  # ~20 s; kept out of the default run's 10 minutes
def test_bfloat16_matmuls_keep_float32_outputs_close():
    """compute_dtype=bfloat16: matmuls in bf16 (same float32 parameters), integrator and outputs in float32."""
    from nerfkit.config import ModelConfig
    from nerfkit import samplers
    from nerfkit.model import NeRFModel
    from nerfkit.types import Bounds, Rays

    outs = {}
    for dtype in ("float32", "bfloat16"):
        small = FieldConfig(depth=2, width=32, view_width=16)
        model = NeRFModel(ModelConfig(coarse=small, fine=small, num_coarse=8, num_fine=8, compute_dtype=dtype),
                          rngs=nnx.Rngs(0))
        o = jnp.zeros((4, 3)).at[:, 2].set(4.0)
        d = jnp.array([[0.0, 0.0, -1.0], [0.1, 0.0, -1.0], [0.0, 0.2, -1.0], [0.3, 0.3, -1.0]])
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
        sampler = samplers.build(model.cfg, Bounds.of(2.0, 6.0, [[-1.5] * 3, [1.5] * 3]))
        outs[dtype] = sampler.render(model, Rays(o, d, d), sampler.init_state(), jnp.ones(3))
    assert outs["bfloat16"].rgb.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(outs["bfloat16"].rgb), np.asarray(outs["float32"].rgb), atol=5e-2)  # bf16: 8-bit mantissa


# ------------------------------------------------------------------------------------------- field_flops
def _matmul_flops(jaxpr) -> int:
    """2 x multiply-adds of every dot_general in a jaxpr (recursing into sub-jaxprs): an independent count."""
    import math

    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            k = math.prod(eqn.invars[0].aval.shape[i] for i in contract)
            total += 2 * k * math.prod(eqn.outvars[0].aval.shape)
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += _matmul_flops(inner)
    return total


@pytest.mark.parametrize("cfg", [
    FieldConfig(),  # the paper's field
    TINY,
    FieldConfig(depth=3, width=32, skips=(), pos_freqs=4, use_viewdirs=False),
    FieldConfig(encoding="hash", depth=1, width=64, skips=(), view_width=64, hash_levels=4, hash_log2_size=10),
    FieldConfig(encoding="fourier", fourier_features=64, depth=2, width=32, skips=(0,), view_width=16),
    FieldConfig(encoding="fourier", fourier_features=48, depth=2, width=32, skips=(), use_viewdirs=False),
    FieldConfig(activation="sine", pos_freqs=0, depth=3, width=32, skips=(1,), view_width=16),
    FieldConfig(activation="sine", pos_freqs=6, depth=2, width=32, skips=(), use_viewdirs=False),
], ids=["paper", "tiny", "no-viewdirs", "hash", "fourier", "fourier-no-viewdirs", "siren", "siren-pe"])
def test_field_flops_counts_every_matmul(cfg):
    from nerfkit.fields import field_flops

    graphdef, params = nnx.split(nnx.eval_shape(lambda: NeRFField(cfg, rngs=nnx.Rngs(0))), nnx.Param)  # shapes only
    jaxpr = jax.make_jaxpr(lambda p, x, d: nnx.merge(graphdef, p)(x, d))(params, jnp.zeros((1, 3)), jnp.zeros((1, 3)))
    assert field_flops(cfg) == _matmul_flops(jaxpr.jaxpr)


def test_field_flops_fourier_by_hand():
    from nerfkit.fields import field_flops

    # B v: 3 -> 64; trunk 128 -> 32 -> 32; density 32 -> 1; colour 32 -> 3 (multiply-adds x 2).
    cfg = FieldConfig(encoding="fourier", fourier_features=64, depth=2, width=32, skips=(), use_viewdirs=False)
    assert field_flops(cfg) == 2 * (3 * 64 + 128 * 32 + 32 * 32 + 32 * 1 + 32 * 3)


# ------------------------------------------------------------------------------ Gaussian Fourier features
FOURIER = FieldConfig(encoding="fourier", fourier_features=32, fourier_scale=4.0, depth=2, width=32, skips=(0,),
                      dir_freqs=2, view_width=16)


def _line_power(values: np.ndarray) -> np.ndarray:
    v = values - values.mean(axis=0)
    return np.abs(np.fft.rfft(v * np.hanning(v.shape[0])[:, None], axis=0)) ** 2


def _box_line(n: int, aabb=((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))) -> np.ndarray:
    """n world points across the scene box along x (at fixed y, z): t in [0, 1) of its side."""
    lo, hi = np.asarray(aabb, np.float32)
    t = np.arange(n, dtype=np.float32) / n
    return np.stack([lo[0] + t * (hi[0] - lo[0]), np.full(n, 0.2, np.float32), np.full(n, -0.4, np.float32)], -1)


def test_fourier_field_params_exclude_b_and_rebuild_identically():
    from nerfkit.encodings import gaussian_fourier_matrix

    # Parameters: only the MLP (encoding 2 m = 64 wide); B is not a Param and not state at all.
    expected = (_dense(64, 32) + _dense(32 + 64, 32) + _dense(32, 1) + _dense(32, 32) + _dense(32 + 15, 16)
                + _dense(16, 3))
    graphdef, params = nnx.split(NeRFField(FOURIER, rngs=nnx.Rngs(0)), nnx.Param)  # the fit's split
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == expected
    _, _, rest = nnx.split(NeRFField(FOURIER, rngs=nnx.Rngs(0)), nnx.Param, ...)
    assert not jax.tree.leaves(rest)  # nothing outside nnx.Param
    # A model built with another init seed, given the first one's params (what a checkpoint restore does),
    # computes the same function: B comes from the config, not from the init key.
    graphdef2, _ = nnx.split(NeRFField(FOURIER, rngs=nnx.Rngs(7)), nnx.Param)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1.5, 1.5, (64, 3)), jnp.float32)
    d = jnp.asarray([0.0, 0.0, 1.0])
    a = nnx.merge(graphdef, params)(x, d)
    b = nnx.merge(graphdef2, params)(x, d)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # And B is the configured one: the encoding equals the formula on the box mapped to [0, 1]^3.
    unit = (np.asarray(x, np.float64) + 1.5) / 3.0
    arg = 2 * np.pi * unit @ gaussian_fourier_matrix(32, 4.0, 0).astype(np.float64).T
    enc = np.asarray(nnx.merge(graphdef, params).encode(x))
    np.testing.assert_allclose(enc, np.concatenate([np.cos(arg), np.sin(arg)], -1), atol=5e-5)
    # Another fourier_seed is another B.
    other = nnx.merge(nnx.split(NeRFField(dataclasses.replace(FOURIER, fourier_seed=1), rngs=nnx.Rngs(0)),
                                nnx.Param)[0], params)(x, d)
    assert not np.allclose(np.asarray(other[1]), np.asarray(a[1]))


def test_fourier_checkpoint_round_trip(tmp_path):
    """Orbax save of a fit's params, restore into a model built fresh (another seed): same outputs."""
    from nerfkit.checkpoint import Checkpointer
    from nerfkit.config import ModelConfig
    from nerfkit.model import build_model

    cfg = ModelConfig(coarse=FOURIER, sampler="occupancy")
    graphdef, params = build_model(cfg, seed=0)
    with Checkpointer(tmp_path) as ck:
        ck.save(1, {"params": params})
    graphdef2, target = build_model(cfg, seed=1)
    with Checkpointer(tmp_path, create=False) as ck:
        _, restored = ck.restore({"params": target})
    x = jnp.asarray(np.random.default_rng(1).uniform(-1.5, 1.5, (32, 3)), jnp.float32)
    d = jnp.asarray([0.0, 1.0, 0.0])
    want = nnx.merge(graphdef, params).coarse(x, d)
    got = nnx.merge(graphdef2, restored["params"]).coarse(x, d)
    for u, v in zip(want, got):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_fourier_field_frequencies_are_cycles_per_box():
    """The field maps the scene box to [0, 1]^3: across the box, feature j oscillates |B_jx| times."""
    from nerfkit.encodings import gaussian_fourier_matrix

    aabb = ((-2.0, -1.0, -1.0), (2.0, 1.0, 1.0))  # a 4-unit-long box: cycles per box, not per world unit
    cfg = dataclasses.replace(FOURIER, fourier_features=256, fourier_scale=8.0)
    field = NeRFField(cfg, rngs=nnx.Rngs(0), aabb=aabb)
    n = 2048
    power = _line_power(np.asarray(field.encode(jnp.asarray(_box_line(n, aabb)))))
    freqs = np.arange(power.shape[0])  # the line spans one box side: bin k = k cycles per box
    centroid = (freqs[:, None] * power).sum() / power.sum()
    np.testing.assert_allclose(centroid, np.abs(gaussian_fourier_matrix(256, 8.0, 0)[:, 0]).mean(), rtol=0.06)


def test_fourier_scale_raises_high_frequency_energy_at_init():
    """A field on larger-sigma features is a rougher function at initialisation: its output along a line
    through the box has its spectral centroid and high-frequency energy rise with sigma (NTK intuition,
    Tancik et al. fig. 3)."""
    n = 1024
    x = jnp.asarray(_box_line(n))
    stats = {}
    for sigma in (2.0, 4.0, 16.0):
        cents, high = [], []
        for seed in range(3):
            cfg = FieldConfig(encoding="fourier", fourier_features=128, fourier_scale=sigma, fourier_seed=seed,
                              depth=3, width=64, skips=(), use_viewdirs=False)
            field = NeRFField(cfg, rngs=nnx.Rngs(seed))
            raw = np.asarray(field.color(field._trunk(x)[0]))  # the colour logits [n, 3]
            power = _line_power(raw)
            freqs = np.arange(power.shape[0])[:, None]
            cents.append((freqs * power).sum() / power.sum())
            high.append(power[8:].sum() / power.sum())  # energy above 8 cycles per box
        stats[sigma] = (np.mean(cents), np.mean(high))
    (c2, h2), (c4, h4), (c16, h16) = stats[2.0], stats[4.0], stats[16.0]
    assert c2 < c4 < c16 and h2 < h4 < h16, stats
    assert c16 > 2.5 * c4 and c4 > 1.3 * c2, stats  # the features' centroid scales x4 and x2
    assert h16 > 0.4 and h2 < 0.1, stats


# ---------------------------------------------------------------------------------------------- SIREN
def _uniform_ks(samples: np.ndarray, bound: float) -> float:
    """Kolmogorov-Smirnov distance of samples to U(-bound, bound)."""
    s = np.sort(samples.ravel())
    cdf = (np.clip(s, -bound, bound) + bound) / (2 * bound)
    n = s.size
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))


def test_siren_initialisation():
    w0 = 30.0
    cfg = FieldConfig(activation="sine", siren_w0=w0, pos_freqs=0, depth=3, width=256, skips=(1,), view_width=128)
    field = NeRFField(cfg, rngs=nnx.Rngs(0))
    layers = [(field.trunk[0], 3, True), (field.trunk[1], 256, False), (field.trunk[2], 256 + 3, False),
              (field.view, 256 + 27, False)]  # (layer, fan-in, first); the skip widens layer 2's input
    for layer, fan_in, first in layers:
        kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
        assert kernel.shape[0] == fan_in
        bound = 1.0 / fan_in if first else np.sqrt(6.0 / fan_in) / w0
        assert np.abs(kernel).max() <= bound
        assert np.abs(kernel).max() > 0.97 * bound  # fills the interval (not a narrower distribution)
        # Uniform: KS distance well under the 1 % critical value 1.63 / sqrt(n); variance bound^2 / 3.
        assert _uniform_ks(kernel, bound) < 1.63 / np.sqrt(kernel.size)
        np.testing.assert_allclose(kernel.var(), bound ** 2 / 3, rtol=0.1 if first else 0.03)
        b_bound = 1.0 / np.sqrt(fan_in)
        assert np.abs(bias).max() <= b_bound and bias.std() > 0.45 * b_bound  # random phases (std b/sqrt 3), not 0
    # The same config with ReLU keeps Flax's default (LeCun normal) kernels: far outside SIREN's hidden bound.
    relu = NeRFField(dataclasses.replace(cfg, activation="relu"), rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(relu.trunk[1].kernel[...])).max() > 5 * np.sqrt(6.0 / 256) / w0


def test_siren_activations_keep_their_distribution_through_depth():
    """SIREN's theorem 1.8: with this init, every hidden layer's sin(w0 z) has the arcsine distribution
    (std 1/sqrt(2)) and w0 z has variance 2/n * n * 1/2 = 1 plus the bias's w0^2 / (3 n)."""
    w0, width = 30.0, 256
    cfg = FieldConfig(activation="sine", siren_w0=w0, pos_freqs=0, depth=5, width=width, skips=(), use_viewdirs=False)
    field = NeRFField(cfg, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4096, 3)), jnp.float32)
    h = field.encode(x)
    for i, layer in enumerate(field.trunk):
        z = w0 * np.asarray(layer(h))
        h = jnp.sin(z)
        assert abs(float(np.std(h)) - np.sqrt(0.5)) < 0.04, (i, float(np.std(h)))
        if i > 0:
            np.testing.assert_allclose(z.std(), np.sqrt(1.0 + w0 ** 2 / (3 * width)), rtol=0.12)


def _fit_1d(cfg: FieldConfig, steps: int = 300, lr: float = 1e-3) -> float:
    """Fit the field's RGB to three high-frequency signals along x in [-1, 1) with Adam; the final MSE."""
    import optax

    n = 256
    xs = np.linspace(-1, 1, n, endpoint=False)
    x = jnp.asarray(np.stack([xs, np.zeros(n), np.zeros(n)], -1), jnp.float32)
    target = jnp.asarray(np.stack([
        0.5 + 0.4 * np.sin(2 * np.pi * 4 * xs),                                   # 4 cycles per unit
        0.5 + 0.3 * np.sin(2 * np.pi * 7 * xs + 1) + 0.1 * np.cos(2 * np.pi * 2 * xs),
        0.5 + 0.36 * np.sign(np.sin(2 * np.pi * 3 * xs)),                         # a square wave
    ], -1), jnp.float32)
    graphdef, params = nnx.split(NeRFField(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    tx = optax.adam(lr)

    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p)(x)[1] - target) ** 2)

    @jax.jit
    def run(p):
        def body(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
        return loss(p)

    return float(run(params))


def test_siren_fits_high_frequencies_faster_than_relu():
    # Same size (3 x 64 on raw xyz), same optimiser, same 300 steps. Measured: SIREN 2e-4, ReLU 6e-2.
    base = FieldConfig(depth=3, width=64, skips=(), pos_freqs=0, use_viewdirs=False)
    relu = _fit_1d(base)
    siren = _fit_1d(dataclasses.replace(base, activation="sine"))
    assert siren < 2e-3, siren
    assert siren < 0.05 * relu, (siren, relu)


# ------------------------------------------------------------------------------------------ mip (cov=)
def test_field_takes_a_covariance_for_mip():
    """``field(x, d, cov=...)`` (what --model.mip calls): frequency encodes with mip's IPE, fourier with the
    expected features of the box-normalised Gaussian; zero covariance is the plain field; hash refuses."""
    from nerfkit import mip
    from nerfkit.encodings import fourier_features, gaussian_fourier_matrix
    from nerfkit.errors import InputError

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1.5, 1.5, (8, 3)), jnp.float32)
    cov = jnp.asarray(rng.uniform(0, 0.01, (8, 3)), jnp.float32)
    d = jnp.asarray([0.0, 0.0, 1.0])
    pe = NeRFField(TINY, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(pe.encode(x, cov)), np.asarray(mip.integrated_pos_enc(x, cov, 4)))
    aabb = ((-1.0, -1.0, -1.0), (3.0, 1.0, 1.0))  # sides 4, 2, 2: the variance scales by 1/side^2
    ff = NeRFField(FOURIER, rngs=nnx.Rngs(0), aabb=aabb)
    unit = (x - jnp.asarray(aabb[0])) / jnp.asarray([4.0, 2.0, 2.0])
    np.testing.assert_allclose(np.asarray(ff.encode(x, cov)),
                               np.asarray(fourier_features(unit, gaussian_fourier_matrix(32, 4.0, 0),
                                                           cov / jnp.asarray([16.0, 4.0, 4.0]))), atol=1e-5)
    for field in (pe, ff):
        plain, zero = field(x, d), field(x, d, cov=jnp.zeros_like(cov))
        for u, v in zip(plain, zero):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-6)
        assert not np.allclose(np.asarray(field(x, d, cov=cov)[1]), np.asarray(plain[1]))
    hashed = NeRFField(FieldConfig(encoding="hash", depth=1, width=16, skips=(), hash_levels=2, hash_log2_size=8,
                                   hash_min_res=2, hash_max_res=4), rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="mip"):
        hashed(x, d, cov=cov)
