"""Image reading, writing and area downscaling.

Every image nerfkit computes with is float32 ``[H, W, 4]`` *premultiplied* RGBA in ``[0, 1]`` (see
:mod:`nerfkit.types`; the loaders hold them as 8 bits, see below). Files on disk use straight (un-premultiplied) alpha, as PNG specifies, so this module
converts at the boundary:

* :func:`read_rgba` reads 8-bit or 16-bit PNG (grey, grey+alpha, RGB, RGBA, palette) or anything else
  imageio understands, and returns premultiplied float32 RGBA (alpha = 1 when the file has none).
* :func:`write_rgba_png` writes premultiplied float32 RGBA as an 8-bit straight-alpha RGBA PNG.
* :func:`area_downscale` averages ``factor x factor`` blocks; on premultiplied values this is the exact
  area (box) filter, including along object edges.
* The loaders hold images as 8-bit straight RGBA (:attr:`nerfkit.types.SplitData.pixels`, 4 bytes a pixel):
  :func:`read_pixels_fitting` reads a file into that form (an 8-bit file's own bytes), :func:`shrink_pixels`
  area-downscales it (in premultiplied float, rounded back), :func:`pixel_array` allocates a split's array
  after checking that the host has the memory.

EXIF orientation (phone JPEGs). Every reader here returns the pixels *as stored*, ignoring the EXIF
orientation tag, as COLMAP, Instant-NGP and nerfstudio do: poses and intrinsics from COLMAP belong to the stored
pixels. :func:`read_rgba_fitting` and :func:`image_size_fitting` take the loader's expected size as a
predicate and turn to the EXIF-oriented pixels (:func:`apply_orientation`, what ``PIL.ImageOps.exif_transpose``
does) only when the stored ones do not fit and the oriented ones do, which only a 90-degree orientation
(EXIF 5-8) of a non-square image can tell apart.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np

from nerfkit.errors import InputError
from nerfkit.memory import check_host
from nerfkit.types import pixels_to_rgba, rgba_to_pixels

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def premultiply(straight: np.ndarray) -> np.ndarray:
    """float32 [..., 4] straight-alpha RGBA -> premultiplied (``rgb * alpha``)."""
    straight = np.asarray(straight, np.float32)
    return np.concatenate([straight[..., :3] * straight[..., 3:], straight[..., 3:]], axis=-1)


def area_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downscale by an integer factor.

    Args:
      img: [..., H, W, C] array (any leading batch dims); H and W must be divisible by ``factor``.
      factor: positive integer; 1 returns ``img`` unchanged.
    Returns:
      float32 [..., H // factor, W // factor, C]: the mean of each ``factor x factor`` block. Apply it to
      premultiplied RGBA so that colour is weighted by coverage (the exact area filter).
    Raises:
      ValueError: if ``factor`` is not a positive integer or does not divide H and W.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"downscale factor must be >= 1, got {factor}")
    img = np.asarray(img, np.float32)
    if factor == 1:
        return img
    *lead, h, w, c = img.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {w}x{h} is not divisible by {factor}")
    # Sum rows, then columns, with contiguous float32 adds (much faster than a strided mean over two axes).
    rows = img.reshape(*lead, h // factor, factor, w, c)
    acc = rows[..., 0, :, :].copy()
    for i in range(1, factor):
        acc += rows[..., i, :, :]
    cols = acc.reshape(*lead, h // factor, w // factor, factor, c)
    out = cols[..., 0, :].copy()
    for j in range(1, factor):
        out += cols[..., j, :]
    out *= np.float32(1.0 / (factor * factor))
    return out


def _png_header(path: Path) -> tuple[int, int, bool] | None:
    """(bit depth, colour type, has tRNS chunk) of a PNG file, or None if ``path`` is not a PNG.

    Only the chunk headers before the first IDAT are read, so this is cheap.
    """
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        bit_depth = colour_type = -1
        has_trns = False
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            length, ctype = struct.unpack(">I4s", head)
            if ctype == b"IHDR":
                ihdr = f.read(length)
                bit_depth, colour_type = ihdr[8], ihdr[9]
                f.seek(4, 1)  # CRC
                continue
            if ctype == b"tRNS":
                has_trns = True
            if ctype in (b"IDAT", b"IEND"):
                break
            f.seek(length + 4, 1)
        return bit_depth, colour_type, has_trns


def _read_png16_multichannel(path: Path) -> np.ndarray | None:
    """uint16 [H, W, C] of a 16-bit RGB / RGBA / grey+alpha PNG, or None if Pillow cannot do it.

    Pillow (imageio's PNG backend) has no 16-bit multi-channel modes and silently truncates such images to
    8 bits. Its C decoder still does the inflate and unfiltering; we only swap the final unpacker. For RGB
    and RGBA, ``*;16B`` keeps each sample's high byte and ``*;16L`` (reading big-endian data as
    little-endian) its low byte. For grey+alpha, 8-bit ``RGBA`` unpacking returns the four raw bytes.
    """
    from PIL import Image

    def decode(rawmode: str) -> np.ndarray:
        with Image.open(path) as im:
            (tile,) = im.tile
            args = tile[3]  # the rawmode, or (rawmode, ...) in some Pillow versions
            new_args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
            new_tile = tile._replace(args=new_args) if hasattr(tile, "_replace") else (*tile[:3], new_args)
            im.tile = [new_tile]
            im.load()
            return np.asarray(im)

    try:
        with Image.open(path) as im:
            if len(im.tile) != 1:
                return None
            tile = im.tile[0]
            rawmode = tile[3] if not isinstance(tile[3], tuple) else tile[3][0]
        if rawmode in ("RGB;16B", "RGBA;16B"):
            hi = decode(rawmode).astype(np.uint16)
            lo = decode(rawmode.replace(";16B", ";16L")).astype(np.uint16)
            return (hi << 8) | lo
        if rawmode == "LA;16B":
            raw = decode("RGBA").astype(np.uint16)  # bytes: L_hi, L_lo, A_hi, A_lo
            return np.stack([(raw[..., 0] << 8) | raw[..., 1], (raw[..., 2] << 8) | raw[..., 3]], axis=-1)
    except Exception:  # any internal change in Pillow: fall back to imageio (8-bit precision)
        return None
    return None


def read_raw(path: Path) -> np.ndarray:
    """The pixels of an image file as stored: [H, W] or [H, W, C], uint8 / uint16 / float.

    16-bit multi-channel PNGs keep their full precision (see :func:`_read_png16_multichannel`); PNGs with a
    tRNS colour key come back as RGBA. Raises ``InputError`` naming the file if it cannot be read.
    """
    path = Path(path)
    try:
        header = _png_header(path)
        if header is None and path.suffix.lower() == ".png":
            size = path.stat().st_size
            raise InputError("cannot read image (empty file)" if size == 0 else
                             "cannot read image (not a PNG file: bad signature)", path)
        if header is not None:
            bit_depth, colour_type, has_trns = header
            if bit_depth == 16 and colour_type in (2, 4, 6):
                arr = _read_png16_multichannel(path)
                if arr is not None:
                    return arr
            if has_trns and colour_type in (0, 2, 3):
                return iio.imread(path, plugin="pillow", mode="RGBA")
            arr = iio.imread(path, plugin="pillow")  # naming the plugin skips imageio's format probing
            if bit_depth == 16 and np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint16:
                arr = arr.astype(np.uint16)  # Pillow may hand 16-bit grey back as int32 ("I" mode)
            return arr
        return iio.imread(path)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("image file not found", path) from None
    except Exception as e:  # noqa: BLE001 -- any decoder failure is a user-facing unreadable image
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Could not find a backend" in msg:
            msg = "unsupported or corrupt image file"
        raise InputError(f"cannot read image ({msg})", path) from None


def to_premultiplied_rgba(arr: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Convert raw pixels ([H, W] or [H, W, C], C in 1..4, integer or float) to float32 [H, W, 4] premultiplied.

    Integers are scaled by their dtype's maximum (255 for uint8, 65535 for uint16); floats are taken as
    already in [0, 1]. Grey is replicated to RGB; a missing alpha channel becomes 1.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image shape {arr.shape} (expected grey, grey+alpha, RGB or RGBA)", path)
    if np.issubdtype(arr.dtype, np.integer):
        scale = np.float32(1.0 / np.iinfo(arr.dtype).max)
        img = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        scale = np.float32(1.0)
        img = np.clip(arr.astype(np.float32), 0.0, 1.0)
    elif arr.dtype == np.bool_:
        scale = np.float32(1.0)
        img = arr.astype(np.float32)
    else:
        raise InputError(f"unsupported pixel type {arr.dtype}", path)
    h, w, c = img.shape
    out = np.empty((h, w, 4), np.float32)
    if c <= 2:  # grey [+ alpha]
        out[..., :3] = img[..., :1]
    else:
        out[..., :3] = img[..., :3]
    if c in (2, 4):
        alpha = img[..., -1:]
        out[..., :3] *= alpha * (scale * scale)  # premultiply and rescale in one pass
        out[..., 3:] = alpha * scale
    else:
        out[..., :3] *= scale
        out[..., 3] = 1.0
    return out


def read_rgba(path: Path | str) -> np.ndarray:
    """Read an image file as float32 [H, W, 4] premultiplied RGBA in [0, 1]. Raises ``InputError``."""
    return to_premultiplied_rgba(read_raw(Path(path)), path)


def to_pixels(arr: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Raw pixels ([H, W] or [H, W, C], C in 1..4) -> uint8 [H, W, 4] straight-alpha RGBA, what
    :attr:`nerfkit.types.SplitData.pixels` holds: uint8 as stored, other integers rounded from their dtype's
    range, floats from [0, 1]; grey replicated to RGB; alpha 255 where there is none.

    >>> to_pixels(np.array([[0, 65535]], np.uint16)).tolist()
    [[[0, 0, 0, 255], [255, 255, 255, 255]]]
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image shape {arr.shape} (expected grey, grey+alpha, RGB or RGBA)", path)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer):
            arr = np.round(arr.astype(np.float64) * (255.0 / np.iinfo(arr.dtype).max))
        elif np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_:
            arr = np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0)
        else:
            raise InputError(f"unsupported pixel type {arr.dtype}", path)
        arr = arr.astype(np.uint8)
    h, w, c = arr.shape
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = arr[..., :1] if c <= 2 else arr[..., :3]
    out[..., 3] = arr[..., -1] if c in (2, 4) else 255
    return out


def read_pixels_fitting(path: Path | str, fits: Callable[[int, int], bool]) -> np.ndarray:
    """uint8 [H, W, 4] straight-alpha RGBA of an image file (:func:`to_pixels`), turned as its EXIF
    orientation says when only that ``fits`` (as :func:`read_rgba_fitting`). Raises ``InputError``."""
    img = to_pixels(read_raw(Path(path)), path)
    h, w = img.shape[:2]
    if not fits(w, h) and fits(h, w):
        orientation = exif_orientation(path)
        if _swaps(orientation):
            return apply_orientation(img, orientation)
    return img


def shrink_pixels(pixels: np.ndarray, factor: int, mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 [..., H, W, 4] straight RGBA area-downscaled by ``factor`` (:func:`area_downscale` on the
    premultiplied values, rounded back to 8 bits), after multiplying the coverage by ``mask`` (float [H, W]
    in [0, 1]) if given. ``factor`` 1 without a mask returns ``pixels`` itself.

    >>> px = np.array([[[255, 0, 0, 255], [0, 0, 255, 0]]], np.uint8)  # red, then a transparent pixel
    >>> shrink_pixels(np.concatenate([px, px]), 2).tolist()  # half covered, all red
    [[[255, 0, 0, 128]]]
    """
    if factor == 1 and mask is None:
        return pixels
    rgba = pixels_to_rgba(pixels)
    if mask is not None:
        rgba *= np.asarray(mask, np.float32)[..., None]
    return rgba_to_pixels(area_downscale(rgba, factor))


def pixel_array(n: int, height: int, width: int, path: Path | str | None = None) -> np.ndarray:
    """An empty uint8 [n, height, width, 4] for a split's images; ``InputError`` when the host has not the
    memory for it (:func:`nerfkit.memory.check_host`)."""
    check_host(n * height * width * 4, f"{n} images at {width}x{height}", path)
    return np.empty((n, height, width, 4), np.uint8)


EXIF_ORIENTATION = 0x0112   # the EXIF tag; 1 = as stored, 2-4 flips / 180 degrees, 5-8 swap width and height
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}


def exif_orientation(path: Path | str) -> int:
    """The EXIF orientation (1-8) of an image file; 1 when it has none or Pillow cannot read it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 -- no EXIF to honour
        return 1
    return int(value) if value in _ORIENT else 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels [H, W, ...] as stored -> as an EXIF ``orientation`` says to show them (``exif_transpose``).

    >>> a = np.arange(6).reshape(2, 3)
    >>> apply_orientation(a, 6).tolist()   # 6: rotate 90 degrees clockwise
    [[3, 0], [4, 1], [5, 2]]
    >>> apply_orientation(a, 1) is a
    True
    """
    fn = _ORIENT.get(int(orientation))
    return arr if fn is None else np.ascontiguousarray(fn(arr))


def _swaps(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)


def image_size_fitting(path: Path | str, fits: Callable[[int, int], bool]) -> tuple[int, int]:
    """(width, height) of an image file from its header: the stored size, or the EXIF-oriented one when only
    that ``fits`` (see the module docstring)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 -- not something Pillow reads: decode it fully (raises InputError)
        img = read_raw(Path(path))
        return img.shape[1], img.shape[0]
    if not fits(w, h) and fits(h, w) and _swaps(exif_orientation(path)):
        return h, w
    return w, h


def read_rgba_fitting(path: Path | str, fits: Callable[[int, int], bool]) -> np.ndarray:
    """:func:`read_rgba`, turned as the file's EXIF orientation says when the stored pixels' (width, height)
    do not ``fits`` and the oriented ones do; else as stored (the caller checks the size)."""
    img = read_rgba(path)
    h, w = img.shape[:2]
    if not fits(w, h) and fits(h, w):
        orientation = exif_orientation(path)
        if _swaps(orientation):
            return apply_orientation(img, orientation)
    return img


def write_rgba_png(path: Path | str, premult: np.ndarray) -> None:
    """Write float32 [H, W, 4] premultiplied RGBA as an 8-bit straight-alpha RGBA PNG."""
    iio.imwrite(Path(path), rgba_to_pixels(premult), extension=".png")


def run_in_order(fn, indices, max_workers: int | None = None) -> None:
    """Call ``fn(i)`` for every ``i`` of ``indices`` on a thread pool (image decoding releases the GIL).

    Errors surface in index order, so the one reported is the first bad image; on an error the calls not yet
    started are cancelled.
    """
    from concurrent.futures import ThreadPoolExecutor

    indices = list(indices)
    if len(indices) <= 1:
        for i in indices:
            fn(i)
        return
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [pool.submit(fn, i) for i in indices]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
