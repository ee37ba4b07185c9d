"""The persistent compilation cache (issue 15): where it goes, how it is turned off, and that it never serves
a stale program (a changed config field or jaxlib version compiles afresh; an identical rerun adds nothing)."""

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
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
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
