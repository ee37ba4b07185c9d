"""Camera-pose corrections: 6 numbers per training image, learned with the field (``--model.pose-refine``).

A correction ``delta = (w, t)`` is a rotation vector ``w`` (so(3), radians about the axis ``w / |w|``) and a
translation ``t`` (world units). Its exponential is the rigid motion ``E = [exp(w) | t]`` (the SO(3) x R^3
parametrisation of nerfstudio's camera optimiser: to first order the same as SE(3)'s exponential, whose
translation would be ``V(w) t``, and simpler), applied in the world frame: the refined pose is
``E @ c2w``, so a ray ``o + s d`` of the camera becomes ``exp(w) o + t + s exp(w) d``. ``delta = 0`` is the
identity. Only training rays are corrected (:func:`refine_rays`, in the train step); rendering novel views
and evaluation use the cameras as given.
"""

from __future__ import annotations

import jax.numpy as jnp

from nerfkit.cameras import ndc_rays
from nerfkit.types import Rays


def hat(w):
    """float [..., 3, 3]: the cross-product matrix of ``w`` [..., 3] (``hat(w) @ x == cross(w, x)``).

    >>> hat(jnp.array([1.0, 2.0, 3.0])).tolist()
    [[0.0, -3.0, 2.0], [3.0, 0.0, -1.0], [-2.0, 1.0, 0.0]]
    """
    z = jnp.zeros_like(w[..., 0])
    x, y, c = w[..., 0], w[..., 1], w[..., 2]
    return jnp.stack([jnp.stack([z, -c, y], -1), jnp.stack([c, z, -x], -1), jnp.stack([-y, x, z], -1)], -2)


def so3_exp(w):
    """float [..., 3, 3]: the rotation by ``|w|`` radians about ``w / |w|`` (Rodrigues' formula), for
    rotation vectors ``w`` [..., 3]; exact and differentiable at ``w = 0`` (Taylor series near it).

    A quarter turn about +z takes +x to +y:

    >>> r = so3_exp(jnp.array([0.0, 0.0, jnp.pi / 2]))
    >>> [round(float(v), 6) + 0.0 for v in r @ jnp.array([1.0, 0.0, 0.0])]
    [0.0, 1.0, 0.0]
    >>> so3_exp(jnp.zeros(3)).tolist() == jnp.eye(3).tolist()
    True
    """
    theta2 = jnp.sum(w * w, axis=-1)[..., None, None]
    small = theta2 < 1e-6
    theta = jnp.sqrt(jnp.where(small, 1.0, theta2))  # the other branch runs where small: keep it finite
    a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta2 / 24.0, 2.0 * jnp.sin(0.5 * theta) ** 2 / theta ** 2)
    k = hat(w)
    return jnp.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def exp(delta):
    """float [..., 3, 4]: the rigid motion ``[so3_exp(w) | t]`` of corrections ``delta = (w, t)`` [..., 6].

    >>> exp(jnp.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])).tolist()
    [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]]
    """
    return jnp.concatenate([so3_exp(delta[..., :3]), delta[..., 3:, None]], axis=-1)


def apply_to_c2w(delta, c2w):
    """float [..., 3, 4]: the refined poses ``exp(delta) @ c2w`` of cameras ``c2w`` [..., 3, 4].

    A camera at (1, 0, 0), turned a quarter turn about +z (about the world origin) and lifted by 1:

    >>> c2w = jnp.concatenate([jnp.eye(3), jnp.array([[1.0], [0.0], [0.0]])], axis=1)
    >>> new = apply_to_c2w(jnp.array([0.0, 0.0, jnp.pi / 2, 0.0, 0.0, 1.0]), c2w)
    >>> [round(float(v), 6) + 0.0 for v in new[:, 3]], [round(float(v), 6) + 0.0 for v in new[:, 0]]
    ([0.0, 1.0, 1.0], [0.0, 1.0, 0.0])
    """
    e = exp(delta)
    r, t = e[..., :3], e[..., 3:]
    return jnp.concatenate([r @ c2w[..., :3], r @ c2w[..., 3:] + t], axis=-1)


def apply_to_rays(delta, origins, directions):
    """(origins, directions) [..., 3] of rays moved by the corrections ``delta`` [..., 6] of their cameras:
    the rays the refined cameras :func:`apply_to_c2w` cast through the same pixels.

    >>> o, d = apply_to_rays(jnp.array([0.0, 0.0, jnp.pi / 2, 0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0]),
    ...                      jnp.array([0.0, 1.0, 0.0]))
    >>> [round(float(v), 6) + 0.0 for v in o], [round(float(v), 6) + 0.0 for v in d]
    ([0.0, 1.0, 1.0], [-1.0, 0.0, 0.0])
    """
    r = so3_exp(delta[..., :3])
    return jnp.einsum("...ij,...j->...i", r, origins) + delta[..., 3:], jnp.einsum("...ij,...j->...i", r, directions)


def refine_rays(rays: Rays, delta, ndc=None) -> Rays:
    """``rays`` (world space, [B]) moved by the corrections ``delta`` [B, 6] of their images, then mapped to
    NDC when ``ndc`` = (fx, fy, cx, cy, width, height, near) is given (the scene's NDC projection, as
    :func:`nerfkit.cameras.ndc_rays` takes it). ``viewdirs`` are the new directions (in NDC: the NDC
    directions, as the renderer gives them for NDC cameras).

    A ray from the origin down -z, its camera moved 0.5 right: in NDC (a 2 x 2 image, focal length 1 px) it
    starts half an image width right of the centre of the near plane.

    >>> down = jnp.array([[0.0, 0.0, -1.0]])
    >>> rays = refine_rays(Rays(jnp.zeros((1, 3)), down, down), jnp.array([[0.0, 0.0, 0.0, 0.5, 0.0, 0.0]]),
    ...                    ndc=(1.0, 1.0, 1.0, 1.0, 2, 2, 1.0))
    >>> [round(float(v), 6) + 0.0 for v in rays.origins[0]]
    [0.5, 0.0, -1.0]
    """
    o, d = apply_to_rays(delta, rays.origins, rays.directions)
    if ndc is not None:
        o, d = ndc_rays(o, d, *ndc, xnp=jnp)
    return rays.replace(origins=o, directions=d, viewdirs=d)
