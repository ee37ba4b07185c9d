"""How much memory there is, and refusing work that would not fit.

The loaders ask :func:`check_host` before they allocate a split's images, and ``fit`` asks
:func:`device_free` before it puts the training images on the device (:func:`nerfkit.train_step.TrainData`):
a capture too big for the machine is a one-line :class:`~nerfkit.errors.InputError` (exit code 2), not a
crash minutes later. Host memory is Linux's ``MemAvailable`` (what can be allocated without swapping), else
the free physical pages; device memory is the device's ``bytes_limit - bytes_in_use``
(``Device.memory_stats()``), or the host's for the CPU (whose device memory is host memory).
"""

from __future__ import annotations

import os
from pathlib import Path

from nerfkit.errors import InputError

MEMINFO = Path("/proc/meminfo")


def gib(n: float) -> str:
    """Bytes as GiB with two decimals.

    >>> gib(3 * 2 ** 30), gib(5e6)
    ('3.00 GiB', '0.00 GiB')
    """
    return f"{n / 2 ** 30:.2f} GiB"


def host_available() -> int | None:
    """Bytes of host memory available without swapping (``MemAvailable``), or None when unknown."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def device_free(device) -> int | None:
    """Bytes free on a JAX ``device``: ``bytes_limit - bytes_in_use`` from its memory stats; the host's
    available memory for a CPU device (or any device without stats); None when unknown."""
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 -- backends without memory stats raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available()


def check_fits(need: int, free: int | None, what: str, where: str, path=None, field: str | None = None) -> None:
    """Raise ``InputError`` when ``need`` bytes of ``what`` exceed ``free`` bytes of ``where`` (None: unknown,
    no check).

    >>> check_fits(3 * 2 ** 30, 2 ** 30, "the training images", "the cpu device", field="--data.downscale")
    Traceback (most recent call last):
    nerfkit.errors.InputError: [--data.downscale]: the training images need 3.00 GiB but the cpu device has 1.00 GiB free; use a larger --data.downscale or fewer images
    """
    if free is not None and need > free:
        raise InputError(f"{what} need {gib(need)} but {where} has {gib(free)} free; use a larger "
                         "--data.downscale or fewer images", path, field)


def check_host(need: int, what: str, path=None) -> None:
    """:func:`check_fits` against the host's available memory (field ``downscale``)."""
    check_fits(need, host_available(), what, "the host", path, "downscale")
