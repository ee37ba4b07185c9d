"""Shared data types: cameras, scenes, rays, render outputs, packed samples and sampler state.

Conventions
-----------
* Camera-to-world matrices are ``float32 [N, 3, 4]`` in the OpenGL/Blender convention: the camera looks
  down its local ``-z`` axis, ``+y`` is up and ``+x`` is right.
* Intrinsics are in pixels; pixel ``(i, j)`` (column, row) has its centre at ``(i + 0.5, j + 0.5)``.
* Images are computed with *premultiplied*: ``rgba[..., :3]`` is colour times alpha, so area filtering is
  exact and compositing on a background ``bg`` is ``rgb + (1 - alpha) * bg``. They are *held* as 8-bit
  straight-alpha RGBA (:attr:`SplitData.pixels`, 4 bytes a pixel) and converted where used
  (:func:`pixels_to_rgba`).
* Forward-facing scenes (LLFF) are sampled in normalised device coordinates: cameras with ``ndc_near`` set
  return rays already mapped to NDC (see :func:`nerfkit.cameras.ndc_rays`), and the scene's near/far are
  0 and 1 along those rays.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Cameras:
    """Pinhole cameras sharing one image size.

    Attributes:
      c2w: float32 [N, 3, 4] camera-to-world (OpenGL convention).
      fx, fy, cx, cy: float32 [N] intrinsics in pixels.
      width, height: image size in pixels.
      distortion: optional float32 [N, 4] OpenCV (k1, k2, p1, p2); None for an ideal pinhole.
      ndc_near: None for ordinary (world-space) rays. A number: every ray generated for these cameras
        (:func:`~nerfkit.cameras.image_rays`, :func:`~nerfkit.cameras.all_rays`) is mapped to normalised
        device coordinates with this near plane (world ``z = -ndc_near``), the projection built from the
        camera's own ``fx / width``, ``fy / height``, ``cx / width``, ``cy / height`` (which must then be the
        same for every camera of the scene, as in an LLFF capture; they do not change under :meth:`scaled`).
        The world frame must be the forward-facing one: cameras look roughly down ``-z`` from ``z > -ndc_near``.
    """

    c2w: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    width: int
    height: int
    distortion: np.ndarray | None = None
    ndc_near: float | None = None

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def subset(self, idx) -> "Cameras":
        idx = np.asarray(idx)
        return dataclasses.replace(
            self,
            c2w=self.c2w[idx],
            fx=self.fx[idx],
            fy=self.fy[idx],
            cx=self.cx[idx],
            cy=self.cy[idx],
            distortion=None if self.distortion is None else self.distortion[idx],
        )

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for an image resized by ``factor`` (0.25 = a quarter of the size)."""
        w = int(round(self.width * factor))
        h = int(round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return dataclasses.replace(
            self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, width=w, height=h
        )


PIXEL_SCALE = 1.0 / 255.0  # uint8 -> [0, 1]


def pixels_to_rgba(pixels, xnp=np):
    """uint8 [..., 4] straight-alpha RGBA (what :attr:`SplitData.pixels` holds) -> float32 [..., 4]
    premultiplied RGBA in [0, 1]; ``xnp`` is ``np`` or ``jnp`` (the train step converts its batch's pixels
    with this too).

    >>> pixels_to_rgba(np.array([[255, 128, 0, 255], [255, 255, 255, 51]], np.uint8)).astype(float).round(4).tolist()
    [[1.0, 0.502, 0.0, 1.0], [0.2, 0.2, 0.2, 0.2]]
    """
    x = pixels.astype(xnp.float32) * xnp.float32(PIXEL_SCALE)
    return xnp.concatenate([x[..., :3] * x[..., 3:], x[..., 3:]], axis=-1)


def rgba_to_pixels(rgba) -> np.ndarray:
    """float [..., 4] premultiplied RGBA -> uint8 [..., 4] straight alpha (rounded; colour 0 where alpha is 0).

    >>> rgba_to_pixels(np.array([[0.2, 0.2, 0.2, 0.2], [0.5, 0.25, 0.0, 1.0]])).tolist()
    [[255, 255, 255, 51], [128, 64, 0, 255]]
    """
    rgba = np.clip(np.asarray(rgba, np.float32), 0.0, 1.0)
    alpha = rgba[..., 3:]
    rgb = np.where(alpha > 0, rgba[..., :3] / np.where(alpha > 0, alpha, 1.0), 0.0)
    straight = np.concatenate([np.clip(rgb, 0.0, 1.0), alpha], axis=-1)
    return np.round(straight * 255.0).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class SplitData:
    """One split of a scene.

    The images are held as 8-bit *straight*-alpha RGBA, 4 bytes a pixel: a photo's own bytes (alpha 255
    where the file has none), so a full-resolution 8-bit image comes back exactly as the file has it.
    Images that were area-downscaled on loading (premultiplied, in float) are rounded back to 8 bits; 16-bit
    and float images are rounded to 8 bits. Everything that computes with the pixels uses the premultiplied
    float32 convention of this module through :meth:`image`, :attr:`rgba` or :meth:`composite`.

    Attributes:
      cameras: the split's cameras.
      pixels: uint8 [N, H, W, 4] straight-alpha RGBA.
      names: the image file of each view (for messages and output names).
    """

    cameras: Cameras
    pixels: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_rgba(cls, cameras: Cameras, rgba: np.ndarray, names: tuple[str, ...]) -> "SplitData":
        """A split from float [N, H, W, 4] premultiplied RGBA (rounded to 8 bits, :func:`rgba_to_pixels`)."""
        return cls(cameras=cameras, pixels=rgba_to_pixels(rgba), names=tuple(names))

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def image(self, index: int) -> np.ndarray:
        """float32 [H, W, 4] premultiplied RGBA of view ``index``."""
        return pixels_to_rgba(self.pixels[index])

    @property
    def rgba(self) -> np.ndarray:
        """float32 [N, H, W, 4] premultiplied RGBA of every view: a new array, 16 bytes a pixel, so for small
        splits and tests; use :meth:`image` one view at a time."""
        return pixels_to_rgba(self.pixels)

    def composite(self, background: np.ndarray, index: int | None = None) -> np.ndarray:
        """float32 [H, W, 3] colour of view ``index`` on ``background`` (float32 [3]); without ``index``,
        [N, H, W, 3] of every view."""
        rgba = self.rgba if index is None else self.image(index)
        return rgba[..., :3] + (1.0 - rgba[..., 3:]) * np.asarray(background, np.float32)


@dataclasses.dataclass(frozen=True)
class Scene:
    """What every loader returns.

    Attributes:
      splits: 'train', 'val', 'test' (a split may be absent).
      near, far: ray bounds in world units (for NDC cameras: in the NDC ray parameter, 0 and 1).
      aabb: float32 [2, 3] axis-aligned box containing the scene (min, max); in NDC space for NDC cameras.
      source: where the scene came from (a path or 'demo').
      depth_range: forward-facing scenes only: (closest, farthest) scene depth in world units, after the
        loader's rescaling (LLFF: the min and max of ``poses_bounds.npy``'s bounds times the scale factor).
        :func:`nerfkit.camera_paths.spiral_path` needs it to place the spiral's focus. None otherwise.
      cameras_only: splits known by their cameras and image names only, their images not decoded (a loader
        asked for them so, e.g. ``fit``'s test split): name -> (cameras, names). Empty by default.
    """

    splits: dict[str, SplitData]
    near: float
    far: float
    aabb: np.ndarray
    source: str
    depth_range: tuple[float, float] | None = None
    cameras_only: dict[str, tuple[Cameras, tuple[str, ...]]] = dataclasses.field(default_factory=dict)


@flax.struct.dataclass
class Rays:
    """A batch of rays (a pytree, usable inside ``jit``).

    Attributes:
      origins: float32 [..., 3].
      directions: float32 [..., 3]; sample positions are ``origins + t * directions``. For perspective
        cameras this is the unit vector, so ``t`` (and rendered depth) is Euclidean distance. For NDC
        cameras it is not normalised: ``t`` in [0, 1] runs from the near plane (NDC z = -1) to infinity
        (NDC z = +1).
      viewdirs: float32 [..., 3] unit direction fed to the view-dependent colour branch (the world-space
        direction, also for NDC cameras).
      radii: float32 [...] or None: the radius, at unit distance, of the cone a ray stands for (its pixel's
        footprint; used by mip-NeRF's integrated encoding). None: rays are lines.
      image_ids: int32 [...] or None: the training image each ray comes from (appearance embeddings);
        None for novel views (the model's render-time appearance is used).
      appearance: float32 [..., appearance_dim] or None: an appearance code for each ray, used instead of the
        codes ``image_ids`` or the render-time setting would give (a code fitted to a held-out view).
    """

    origins: jax.Array
    directions: jax.Array
    viewdirs: jax.Array
    radii: jax.Array | None = None
    image_ids: jax.Array | None = None
    appearance: jax.Array | None = None

    def reshape(self, *shape) -> "Rays":
        return jax.tree_util.tree_map(lambda x: x.reshape(*shape, x.shape[-1]), self)


# --------------------------------------------------------------------------------------------------------
# Backgrounds, render outputs, packed samples and sampler state: what flows between samplers, the
# integrator, the renderer and the train step.

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "random": (1.0, 1.0, 1.0)}
"""Background colours by name. ``random`` trains on a new colour per ray; everything that needs one colour
(rendering, evaluation, validation) uses white for it."""


def background_rgb(name: str) -> np.ndarray:
    """float32 [3]: the colour a background name stands for (white for ``random``).

    >>> background_rgb("black").tolist()
    [0.0, 0.0, 0.0]
    >>> background_rgb("random").tolist()
    [1.0, 1.0, 1.0]
    """
    return np.asarray(BACKGROUNDS[name], np.float32)


@flax.struct.dataclass
class RenderOutputs:
    """What rendering a batch of ``B`` rays gives (a pytree: returned from ``jit``).

    Attributes:
      rgb: float32 [B, 3] colour, background included.
      depth: float32 [B] expected distance of the surface (``far`` for rays that hit nothing).
      opacity: float32 [B] accumulated weight, ``sum_i w_i``.
      weights: float32 [B, S] interval weights (batched samples only), else None.
      coarse: the coarse pass of a two-pass sampler (its own loss), else None.
      ray_ok: bool [B]: the ray's samples all fitted in a fixed sample budget (use only these rays in a loss;
        a renderer redoes the others), or None when every ray is complete.
      n_samples: int32 []: field evaluations used by the batch (packed samplers), or None.
      samples: int32 [B]: field evaluations of each ray (rendering in rounds), or None.
      rounds: int32 []: rounds of rendering in rounds, or None.
      losses: extra loss terms the sampler computed while rendering for training (float32 [] each, already
        weighted; the proposal sampler's interlevel and distortion losses), or None.
    """

    rgb: jax.Array
    depth: jax.Array
    opacity: jax.Array
    weights: jax.Array | None = None
    coarse: "RenderOutputs | None" = None
    ray_ok: jax.Array | None = None
    n_samples: jax.Array | None = None
    samples: jax.Array | None = None
    rounds: jax.Array | None = None
    losses: dict | None = None

    def pixels(self) -> dict:
        """The per-ray arrays a renderer returns: ``rgb``, ``depth``, ``opacity`` and, where present,
        ``samples`` (a dict of arrays with the batch as leading axis)."""
        out = {"rgb": self.rgb, "depth": self.depth, "opacity": self.opacity}
        if self.samples is not None:
            out["samples"] = self.samples
        return out


@flax.struct.dataclass
class PackedSamples:
    """The samples of a batch of ``B`` rays packed into one array of ``N`` slots (nerfacc's layout).

    Ray ``r``'s samples are contiguous and in distance order; unused slots have ``delta = 0`` and
    ``ray = B``.

    Attributes:
      t: float32 [N] sample distances.
      delta: float32 [N] interval lengths (0 in unused slots).
      ray: int32 [N] ray of each slot (``B`` for unused slots).
      ray_ok: bool [B] all of the ray's samples fitted in the ``N`` slots.
      n_samples: int32 [] slots used.
    """

    t: jax.Array
    delta: jax.Array
    ray: jax.Array
    ray_ok: jax.Array
    n_samples: jax.Array


@flax.struct.dataclass
class OccupancyGrid:
    """The occupancy sampler's state: which cells of the scene box can hold anything.

    Attributes:
      density: float32 [R, R, R] running (EMA) estimate of each cell's density, indexed [x, y, z].
      occupied: bool [R, R, R] cells the sampler visits.
    """

    density: jax.Array
    occupied: jax.Array


@flax.struct.dataclass
class NoState:
    """The state of a sampler that keeps none (an empty pytree)."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Where rays are sampled: ``near`` / ``far`` along each ray and the scene box (static: Python floats, so
    a sampler holding them can be closed over by ``jit`` and the marching step is a compile-time constant).

    Attributes:
      near, far: ray bounds (world units; 0 and 1 for NDC cameras).
      aabb: ((x0, y0, z0), (x1, y1, z1)) the scene box.
    """

    near: float
    far: float
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]]

    @classmethod
    def of(cls, near, far, aabb) -> "Bounds":
        """From any numbers and a [2, 3] array-like box.

        >>> Bounds.of(2, 6, np.array([[-1.5] * 3, [1.5] * 3])).aabb[1]
        (1.5, 1.5, 1.5)
        """
        box = np.asarray(aabb, np.float64).reshape(2, 3)
        return cls(float(near), float(far), (tuple(map(float, box[0])), tuple(map(float, box[1]))))
