"""JAX's persistent compilation cache for the ``nerfkit`` commands.

A second ``fit``, ``render`` or ``evaluate`` of the same shapes loads its compiled programs from disk instead
of compiling them again. The cache lives in ``$XDG_CACHE_HOME/nerfkit/jax`` (``~/.cache/nerfkit/jax`` without
``XDG_CACHE_HOME``); the environment variable ``NERFKIT_COMPILE_CACHE`` moves it (a directory) or turns it off
(``off``, ``0``, ``false``, ``none`` or empty). Without ``NERFKIT_COMPILE_CACHE``, a ``JAX_COMPILATION_CACHE_DIR``
the user set is left to JAX. Deleting the directory is always safe: it only holds compiled programs.

A cached program is never stale: JAX keys every entry by a hash of the program itself (its StableHLO, so any
config change that changes what is computed changes the key), the jaxlib version, the backend and its
version, the XLA flags, the compile options and the devices.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

ENV = "NERFKIT_COMPILE_CACHE"
OFF = ("", "off", "0", "false", "none")
# Programs that compile faster than this are not written (JAX's default is 1 s, which leaves out most of a
# small fit's programs; below ~0.05 s reading the entry costs about what compiling does).
MIN_COMPILE_SECONDS = 0.05


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

    environ = os.environ if environ is None else environ
    if environ.get(ENV) is None and environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(environ["JAX_COMPILATION_CACHE_DIR"])
    path = cache_dir(environ)
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: run without the cache rather than fail
        path = None
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
