"""JAX's persistent compilation cache for the ``nerfkit`` commands.

A second ``fit``, ``render`` or ``evaluate`` of the same shapes loads its compiled programs from disk instead
of compiling them again. The cache lives in ``$XDG_CACHE_HOME/nerfkit/jax`` (``~/.cache/nerfkit/jax`` without
``XDG_CACHE_HOME``); the environment variable ``NERFKIT_COMPILE_CACHE`` moves it (a directory) or turns it off
(``off``, ``0``, ``false``, ``none`` or empty). Without ``NERFKIT_COMPILE_CACHE``, a ``JAX_COMPILATION_CACHE_DIR``
the user set is left to JAX. Deleting the directory is always safe: it only holds compiled programs and values
computed from nerfkit's code and libraries (:func:`kept`).

A cached program is never stale: JAX keys every entry by a hash of the program itself (its StableHLO, so any
config change that changes what is computed changes the key), the jaxlib version, the backend and its
version, the XLA flags, the compile options and the devices.

The renderer's programs and fit's train step and occupancy-grid update also skip tracing on a second run
(:class:`Persisted`): their compiled program (under ``programs/`` in the cache directory) is keyed by a
description of everything the traced function closes over (the model's structure and static fields, the
sampler, the background; for the train step the optimiser's settings, batch size and seed), the argument shapes, a
hash of nerfkit's source, the versions of JAX, jaxlib, Flax and NumPy, the device and ``XLA_FLAGS``. A
description that could hide state (an object or closure printed by address) is not persisted at all.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

ENV = "NERFKIT_COMPILE_CACHE"
OFF = ("", "off", "0", "false", "none")
# Programs that compile faster than this are not written (JAX's default is 1 s, which leaves out most of a
# small fit's programs; below ~0.05 s reading the entry costs about what compiling does).
MIN_COMPILE_SECONDS = 0.05
_active: Path | None = None  # the directory :func:`enable` set up (None: off); where Persisted programs go


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the cache goes, from ``environ`` (default ``os.environ``): ``NERFKIT_COMPILE_CACHE``, else
    ``$XDG_CACHE_HOME/nerfkit/jax``, else ``~/.cache/nerfkit/jax``; None when turned off.

    >>> cache_dir({"NERFKIT_COMPILE_CACHE": "/tmp/cc"}), cache_dir({"NERFKIT_COMPILE_CACHE": "off"})
    (PosixPath('/tmp/cc'), None)
    >>> cache_dir({"XDG_CACHE_HOME": "/var/cache/me"})
    PosixPath('/var/cache/me/nerfkit/jax')
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nerfkit" / "jax"


def enable(environ: Mapping[str, str] | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (or turn it off); returns the directory
    in use (None: off). Call it before the first compilation: JAX opens its cache once, at the first compile.
    Leaves a ``JAX_COMPILATION_CACHE_DIR`` of the user's alone unless ``NERFKIT_COMPILE_CACHE`` is set."""
    import jax

    global _active
    environ = os.environ if environ is None else environ
    if environ.get(ENV) is None and environ.get("JAX_COMPILATION_CACHE_DIR"):
        _active = Path(environ["JAX_COMPILATION_CACHE_DIR"])
        return _active
    path = _active = cache_dir(environ)
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: run without the cache rather than fail
        path = _active = None
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path


def describe(*parts: Any) -> str | None:
    """A text that tells apart every distinct value of ``parts`` (configs, a model's graphdef, a sampler), for
    the key of a :class:`Persisted` program: their reprs with NumPy arrays printed whole and exactly and
    module-level functions by name. None when some part is printed by address (an object without a repr, a
    lambda or local closure): its state would not be in the text, so it must not key a program.

    >>> describe((1.5, np.float32(0.1)), {"a": np.arange(3)})
    "((1.5, np.float32(0.1)), {'a': array([0, 1, 2])})"
    >>> describe(np.sqrt), describe(lambda x: x), describe(object())
    ("<ufunc 'sqrt'>", None, None)
    """
    with np.printoptions(threshold=sys.maxsize, floatmode="unique"):
        text = repr(parts[0] if len(parts) == 1 else parts)
    text = re.sub(r"<function ([\w.]+) at 0x[0-9a-fA-F]+>", r"<function \1>", text)
    return None if re.search(r"0x[0-9a-fA-F]{4,}|<lambda>|<locals>", text) else text


def source_digest(root: Path) -> str:
    """A hash of every ``.py`` file under ``root`` (names and contents): any edit to nerfkit changes it."""
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    """What else a traced program depends on: nerfkit's source, the library versions, the backend, JAX's
    numerics flags."""
    import flax
    import jax
    import jaxlib

    device = jax.devices()[0]
    return repr((source_digest(Path(__file__).resolve().parent), jax.__version__, jaxlib.__version__,
                 flax.__version__, np.__version__,
                 device.platform, device.device_kind, getattr(device.client, "platform_version", None),
                 jax.device_count(), os.environ.get("XLA_FLAGS"), jax.config.jax_enable_x64,
                 jax.config.jax_default_matmul_precision))


class Persisted:
    """A jitted function of array pytrees whose compiled program is kept in the cache directory, so that a
    second process skips tracing and lowering as well as compiling: the first call of each argument shape
    compiles and writes ``programs/<hash>.pjrt`` (``jax.experimental.serialize_executable``), later
    processes load it (about 0.1 s, against 0.6 s to trace, lower and fetch from JAX's cache on a CPU).

    ``key`` (from :func:`describe`) must tell apart everything ``fn`` closes over; None, more than one device,
    or the cache turned off (:func:`enable`) calls ``fn`` itself. ``donate_argnums``: the arguments whose
    buffers the program may reuse for its outputs, as ``jax.jit`` takes them (``fn``, called itself when
    nothing is persisted, should donate the same). A program that cannot be serialised or read
    back is compiled as usual. Outputs are those of ``fn``, computed by the same program. The files are
    pickles, trusted as the user's own cache directory is."""

    def __init__(self, fn: Callable, key: str | None, donate_argnums: tuple[int, ...] = ()):
        self.fn, self.key, self.donate_argnums = fn, key, tuple(donate_argnums)
        self._calls: dict = {}

    def __call__(self, *args):
        import jax

        if self.key is None or _active is None or jax.device_count() != 1:
            return self.fn(*args)
        leaves, tree = jax.tree.flatten(args)
        avals = tuple((a.shape, a.dtype, a.weak_type) for a in map(jax.typeof, leaves))
        call = self._calls.get((tree, avals))
        if call is None:
            counts = [len(jax.tree.leaves(a)) for a in args]
            starts = np.cumsum([0, *counts])
            donate = tuple(j for i in self.donate_argnums for j in range(starts[i], starts[i + 1]))
            call = self._calls[(tree, avals)] = self._program(tree, avals, donate)
        return call(*leaves)

    def _program(self, tree, avals, donate: tuple[int, ...]) -> Callable:
        import pickle

        import jax
        from jax.experimental import serialize_executable

        flat = jax.jit(lambda *leaves: self.fn(*jax.tree.unflatten(tree, leaves)), donate_argnums=donate)
        path = _entry("programs", ".pjrt", self.key, str(tree), avals, donate)
        try:
            return serialize_executable.deserialize_and_load(*pickle.loads(path.read_bytes()))
        except Exception:  # noqa: BLE001 - not there yet, damaged or unreadable: compile it (again)
            pass
        try:
            lowered = flat.lower(*(jax.ShapeDtypeStruct(s, d, weak_type=w) for s, d, w in avals))
            with _jax_cache_off():  # an executable JAX's cache gave back serialises broken on XLA:CPU
                compiled = lowered.compile()
            _write_atomic(path, pickle.dumps(serialize_executable.serialize(compiled)))
            return compiled
        except Exception:  # noqa: BLE001 - not serialisable (or the disk is full): the plain jitted program
            return flat


def kept(key: str | None, make: Callable[[], Any]) -> Any:
    """``make()``, kept in the cache directory (``values/<hash>.pkl``) so that a second process reads it back
    instead of computing it: for values that take longer to compute than to unpickle and depend only on
    ``key`` (from :func:`describe`) and nerfkit's code and libraries (a model's structure, a colour map's
    table). Keyed like a :class:`Persisted` program; None or the cache turned off just calls ``make``. A value
    that cannot be pickled, or a file that cannot be read back, is computed again. The files are pickles,
    trusted as the user's own cache directory is (as :class:`Persisted`'s)."""
    import pickle

    if key is None or _active is None:
        return make()
    path = _entry("values", ".pkl", key)
    try:
        return pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - not there yet, damaged or unreadable: compute it (again)
        pass
    value = make()
    try:
        _write_atomic(path, pickle.dumps(value))
    except Exception:  # noqa: BLE001 - not picklable (or the disk is full): used, not kept
        pass
    return value


def _entry(folder: str, suffix: str, *key: Any) -> Path:
    """The file in the cache directory of what ``key`` describes, in this environment (:func:`_environment`)."""
    digest = hashlib.sha256(repr((*key, _environment())).encode()).hexdigest()
    return _active / folder / f"{digest}{suffix}"


@contextlib.contextmanager
def _jax_cache_off():
    """JAX's persistent cache neither read nor written inside (JAX reads its switch once: reset on both sides)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    jax_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", was)
        jax_cache.reset_cache()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:  # a failed write (a full disk) leaves nothing behind
        tmp.unlink(missing_ok=True)
