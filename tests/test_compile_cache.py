"""The persistent compilation cache (issue 15): where it goes, how it is turned off, and that it never serves
a stale program (a changed config field or jaxlib version compiles afresh; an identical rerun adds nothing),
for JAX's cache and for the renderer's compiled programs kept whole (:class:`compile_cache.Persisted`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from nerfkit import compile_cache

from .conftest import tiny_field

OPTIONS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture()
def restore_jax_cache():
    """Put JAX's cache options (conftest's session cache) back after a test that moves them."""
    saved = {name: getattr(jax.config, name) for name in OPTIONS}
    active = compile_cache._active
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compile_cache._active = active
    jax_cache.reset_cache()


def test_cache_dir_and_switches(tmp_path, restore_jax_cache):
    assert compile_cache.cache_dir({}) == Path.home() / ".cache" / "nerfkit" / "jax"
    for off in ("off", "", "0", "False", " none "):
        assert compile_cache.cache_dir({"NERFKIT_COMPILE_CACHE": off}) is None
    # A JAX_COMPILATION_CACHE_DIR of the user's is left alone, unless NERFKIT_COMPILE_CACHE says otherwise.
    assert compile_cache.enable({"JAX_COMPILATION_CACHE_DIR": "/theirs"}) == Path("/theirs")
    assert compile_cache.enable({"NERFKIT_COMPILE_CACHE": "off", "JAX_COMPILATION_CACHE_DIR": "/x"}) is None
    assert jax.config.jax_enable_compilation_cache is False
    target = tmp_path / "deep" / "cache"
    assert compile_cache.enable({"NERFKIT_COMPILE_CACHE": str(target)}) == target and target.is_dir()
    assert jax.config.jax_enable_compilation_cache is True
    assert jax.config.jax_compilation_cache_dir == str(target)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_SECONDS
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory should be: run without the cache
    assert compile_cache.enable({"NERFKIT_COMPILE_CACHE": str(blocked / "sub")}) is None


def _field_program(field_cfg):
    """A function that compiles and runs nerfkit's field of ``field_cfg`` (as a preset configures it) on 64
    points. The field is built here, so that calling it compiles only the forward pass."""
    from flax import nnx

    from nerfkit.fields import NeRFField

    graphdef, params = nnx.split(NeRFField(field_cfg, rngs=nnx.Rngs(0)), nnx.Param)
    x = np.linspace(-1.0, 1.0, 64 * 3, dtype=np.float32).reshape(64, 3)
    d = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return lambda: jax.block_until_ready(jax.jit(lambda p, x, d: nnx.merge(graphdef, p)(x, d))(params, x, d))


def _entries(path: Path) -> set[str]:
    return {p.name for p in path.glob("*-cache")}


def test_cache_is_never_stale(tmp_path, restore_jax_cache, monkeypatch):
    field = tiny_field()
    run = _field_program(field)
    # A preset field that changes the program (a constant inside it; the same shapes and parameters).
    run_changed = _field_program(dataclasses.replace(field, density_bias=-1.0))
    path = compile_cache.enable({"NERFKIT_COMPILE_CACHE": str(tmp_path / "cc"),
                                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"})
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program, however quick
    jax_cache.reset_cache()
    jax.clear_caches()
    run()
    first = _entries(path)
    assert first, "nothing was cached"
    jax.clear_caches()  # a new process, as far as compiling goes: only the disk cache remains
    run()
    assert _entries(path) == first  # an identical rerun is served from the cache
    jax.clear_caches()
    run_changed()
    after_field = _entries(path)
    assert after_field > first  # the changed field compiled afresh
    # Another jaxlib version never reads this version's programs.
    from jax._src import cache_key

    monkeypatch.setattr(cache_key, "jaxlib_version_str", cache_key.jaxlib_version_str + ".other")
    jax.clear_caches()
    run()
    assert _entries(path) > after_field


def _programs(path: Path) -> set[str]:
    return {p.name for p in (path / "programs").glob("*.pjrt")}


@pytest.fixture()
def loads(monkeypatch) -> list:
    """One entry per compiled program read back from disk (``serialize_executable.deserialize_and_load``)."""
    from jax.experimental import serialize_executable

    calls = []
    load = serialize_executable.deserialize_and_load
    monkeypatch.setattr(serialize_executable, "deserialize_and_load", lambda *a: calls.append(1) or load(*a))
    return calls


def test_render_programs_kept_whole_are_never_stale(tiny_run, tmp_path, restore_jax_cache, monkeypatch, loads):
    from nerfkit import cameras, model, renderer, runs

    run = runs.load_run(tiny_run)
    rays = cameras.image_rays(run.meta.cameras["train"], 0, np)
    o, d = rays.origins.reshape(-1, 3)[:64], rays.directions.reshape(-1, 3)[:64]

    def render(graphdef=run.graphdef):  # a new renderer each time: only the disk remembers programs
        fn = renderer.make_render_fn(graphdef, run.sampler, (1.0, 1.0, 1.0))
        return renderer.render_rays_chunked(fn, run.params, run.sampler_state, o, d, chunk=32)

    compile_cache._active = None
    reference = render()  # the cache off: the plain jitted program
    assert not loads
    cache = tmp_path / "cc"
    monkeypatch.setattr(compile_cache, "_active", cache)
    first = render()
    kept = _programs(cache)
    assert len(kept) == 1 and not loads
    again = render()
    assert loads == [1] and _programs(cache) == kept  # read back, not compiled again
    for out in (first, again):
        for k in reference:
            np.testing.assert_array_equal(out[k], reference[k])
    # A config field that changes the program but no shape (so the parameters still fit): a new program.
    cfg = dataclasses.replace(run.cfg.model, coarse=dataclasses.replace(run.cfg.model.coarse, density_bias=-3.0))
    changed, _ = model.abstract_model(cfg, run.meta.aabb, num_images=len(run.meta.cameras["train"]))
    biased = render(changed)
    assert len(_programs(cache)) == 2 and len(loads) == 1
    assert not np.allclose(biased["opacity"], first["opacity"])
    # Another JAX version (or nerfkit source, device, XLA flags) never reads this one's programs.
    monkeypatch.setattr(compile_cache, "_environment", lambda: "jax 99")
    render()
    assert len(_programs(cache)) == 3 and len(loads) == 1
    # Another cache directory compiles afresh, and what it keeps runs: XLA:CPU serialises an executable that
    # JAX's own cache gave back without its code ("Function ... not found" when the next process runs it).
    other = tmp_path / "other"
    monkeypatch.setattr(compile_cache, "_active", other)
    render()
    np.testing.assert_array_equal(render()["rgb"], reference["rgb"])
    assert len(_programs(other)) == 1 and len(loads) == 2
    # A damaged file is compiled again and replaced.
    monkeypatch.undo()
    monkeypatch.setattr(compile_cache, "_active", cache)
    for name in kept:
        (cache / "programs" / name).write_bytes(b"not a program")
    np.testing.assert_array_equal(render()["rgb"], reference["rgb"])
    assert (cache / "programs" / next(iter(kept))).stat().st_size > 1000


def test_source_digest_follows_every_edit(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = compile_cache.source_digest(tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    edited = compile_cache.source_digest(tmp_path)
    (tmp_path / "pkg" / "b.py").write_text("")
    assert len({before, edited, compile_cache.source_digest(tmp_path)}) == 3


def _quick_model():
    """A model whose train step compiles in a few seconds: one small field, 4 samples a ray."""
    from nerfkit.config import FieldConfig, ModelConfig

    field = FieldConfig(depth=1, width=16, skips=(), view_width=8, pos_freqs=2, dir_freqs=1)
    return ModelConfig(coarse=field, fine=field, num_coarse=4, num_fine=0, sampler="hierarchical")


def test_train_step_kept_whole_is_never_stale(tmp_path, monkeypatch, loads):
    from nerfkit import samplers
    from nerfkit.config import TrainConfig
    from nerfkit.data.demo import make_demo_scene
    from nerfkit.model import build_model
    from nerfkit.train_step import TrainData, make_optimizer, make_train_step, optimizer_settings
    from nerfkit.types import Bounds

    scene = make_demo_scene(width=8, height=8, n_train=2, n_val=0, n_test=0)
    cfg = _quick_model()
    graphdef, params = build_model(cfg, 0, scene.aabb, num_images=2)
    sampler = samplers.build(cfg, Bounds.of(scene.near, scene.far, scene.aabb), TrainConfig())
    data, state = TrainData.from_scene(scene), sampler.init_state()

    def two_steps(tcfg=TrainConfig(batch_rays=32)):  # a new fit each time: only the disk remembers programs
        tx = make_optimizer(tcfg)
        step = make_train_step(graphdef, tx, sampler, batch_rays=32, background="white", seed=0,
                               tx_key=optimizer_settings(tcfg))
        p, o = jax.tree.map(jax.numpy.array, params), tx.init(params)  # copies: the step donates them
        p, o, _ = step(p, o, 0, 1e-2, data, state)
        p, o, m = step(p, o, 1, 1e-2, data, state)
        return jax.tree.map(np.asarray, p), float(m["loss"])

    monkeypatch.setattr(compile_cache, "_active", None)
    reference = two_steps()  # the cache off: jax.jit itself
    cache = tmp_path / "cc"
    monkeypatch.setattr(compile_cache, "_active", cache)
    for n_loads, run in ((0, "compiled and kept"), (1, "read back")):
        got = two_steps()
        assert len(loads) == n_loads and len(_programs(cache)) == 1, run
        jax.tree.map(np.testing.assert_array_equal, got, reference)
    # An optimiser setting is part of the key: Adam's epsilon changes the update, so a new program.
    eps = two_steps(TrainConfig(batch_rays=32, adam_eps=1e-2))
    assert len(_programs(cache)) == 2 and len(loads) == 1 and eps[1] != reference[1]
    # Without a description of its optimiser, a step is never kept (tx is a closure, its settings unknown).
    tx = make_optimizer(TrainConfig())
    assert not isinstance(make_train_step(graphdef, tx, sampler, batch_rays=32, background="white", seed=0),
                          compile_cache.Persisted)


def test_initial_state_is_one_program_equal_to_eager(tmp_path, monkeypatch, loads):
    from nerfkit import samplers
    from nerfkit.config import TrainConfig
    from nerfkit.model import build_model
    from nerfkit.train_step import initial_state, make_optimizer
    from nerfkit.types import Bounds

    cfg, tcfg, aabb = _quick_model(), TrainConfig(seed=3, grad_clip=1.0), np.array([[-1.0] * 3, [1.0] * 3])
    sampler = samplers.build(cfg, Bounds.of(2.0, 6.0, aabb), tcfg)
    graphdef, params = build_model(cfg, 3, aabb)
    want = (params, make_optimizer(tcfg).init(params), sampler.init_state())
    monkeypatch.setattr(compile_cache, "_active", tmp_path / "cc")
    for n_loads, run in ((0, "compiled and kept"), (1, "read back")):
        got_graphdef, *got = initial_state(cfg, tcfg, sampler, aabb)
        assert got_graphdef == graphdef and len(_programs(tmp_path / "cc")) == 1 and len(loads) == n_loads, run
        assert jax.tree.structure(got) == jax.tree.structure(list(want))
        jax.tree.map(np.testing.assert_array_equal, got, list(want))
    other_seed = initial_state(cfg, TrainConfig(seed=4, grad_clip=1.0), sampler, aabb)[1]
    assert len(_programs(tmp_path / "cc")) == 2
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(other_seed), jax.tree.leaves(params)))


def test_kept_values_are_read_back_and_never_stale(tmp_path, monkeypatch):
    """:func:`compile_cache.kept`: a model's abstract structure (graphdef, parameter shapes) is computed once,
    read back equal by the next caller, and computed afresh for a changed config field."""
    import pickle

    from nerfkit.model import abstract_model

    cfg, aabb = _quick_model(), np.array([[-1.0] * 3, [1.0] * 3])
    monkeypatch.setattr(compile_cache, "_active", None)
    want = abstract_model(cfg, aabb)  # the cache off: nnx.eval_shape itself
    cache = tmp_path / "cc"
    monkeypatch.setattr(compile_cache, "_active", cache)
    reads = []
    monkeypatch.setattr(pickle, "loads", lambda b, _load=pickle.loads: reads.append(1) or _load(b))
    for n_reads, run in ((0, "computed and kept"), (1, "read back")):
        graphdef, params = abstract_model(cfg, aabb)
        assert len(reads) == n_reads and len(list(cache.glob("values/*.pkl"))) == 1, run
        assert graphdef == want[0] and jax.tree.structure(params) == jax.tree.structure(want[1])
        assert jax.tree.map(lambda a: (a.shape, a.dtype), params) == jax.tree.map(lambda a: (a.shape, a.dtype),
                                                                                  want[1])
    wider = dataclasses.replace(cfg, coarse=dataclasses.replace(cfg.coarse, width=24))
    graphdef, params = abstract_model(wider, aabb)
    assert len(list(cache.glob("values/*.pkl"))) == 2 and graphdef != want[0]
    assert 24 in {a.shape[-1] for a in jax.tree.leaves(params)}
    # A value that cannot be pickled is used, not kept; a None key is never kept.
    assert compile_cache.kept("a lambda", lambda: (lambda: 1))() == 1
    assert compile_cache.kept(None, lambda: 5) == 5 and len(list(cache.glob("values/*.pkl"))) == 2


def test_demo_scene_is_kept_and_equal(tmp_path, monkeypatch):
    """The demo scene (ray-traced in NumPy, ~1 s) is kept for the next fit and read back exactly."""
    from nerfkit.config import DataConfig
    from nerfkit.data.demo import make_demo_scene
    from nerfkit.runs import load_scene

    want = make_demo_scene()
    monkeypatch.setattr(compile_cache, "_active", tmp_path)
    for _ in ("kept", "read back"):
        got = load_scene(DataConfig(data=None))
        assert len(list(tmp_path.glob("values/*.pkl"))) == 1
        assert got.splits.keys() == want.splits.keys()
        assert (got.near, got.far, got.source) == (want.near, want.far, "demo")
        np.testing.assert_array_equal(got.aabb, want.aabb)
        for name, split in want.splits.items():
            np.testing.assert_array_equal(got.splits[name].pixels, split.pixels)
            np.testing.assert_array_equal(got.splits[name].cameras.c2w, split.cameras.c2w)
            assert got.splits[name].names == split.names
