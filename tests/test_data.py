"""Tests for nerfkit.data: Blender loading, image helpers, the procedural demo scene and its writer."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfkit.cameras import all_rays, focal_from_fov
from nerfkit.data import load_blender, load_scene, make_demo_scene, write_blender
from nerfkit.data import demo
from nerfkit.data.images import area_downscale, read_rgba
from nerfkit.errors import InputError

LEGO = Path(__file__).parents[2] / "shared/data/nerf_synthetic/lego"


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def tiny_scene():
    """16x16 demo scene: 3 train, 2 val, 1 test views."""
    return make_demo_scene(width=16, height=16, n_train=3, n_val=2, n_test=1, seed=0)


@pytest.fixture
def tiny_dir(tiny_scene, tmp_path):
    """The tiny scene written in the Blender layout; tests may break it."""
    root = tmp_path / "scene"
    write_blender(tiny_scene, root)
    return root


def _edit_json(root: Path, split: str, fn) -> Path:
    path = root / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))
    return path


def _expect_error(root, *parts, **kwargs) -> str:
    """Load ``root``; assert InputError whose one-line message contains every string in ``parts``."""
    with pytest.raises(InputError) as info:
        load_blender(root, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for p in parts:
        assert str(p) in msg, f"{p!r} not in {msg!r}"
    return msg


def _write_png16(path: Path, a: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (Pillow cannot write 16-bit RGB/RGBA)."""
    h, w, c = a.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _write_dataset(root: Path, images: list[np.ndarray], meta: dict, split: str = "train") -> Path:
    """Write uint8/uint16 images as ``{split}/r_i.png`` and a transforms file with identity-ish poses."""
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, img in enumerate(images):
        if img.dtype == np.uint16:
            _write_png16(root / split / f"r_{i}.png", img)
        else:
            iio.imwrite(root / split / f"r_{i}.png", img)
        pose = np.eye(4)
        pose[2, 3] = 4.0 + i
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose.tolist()})
    meta = {**meta, "frames": frames}
    (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return root


# ------------------------------------------------------------------------------------------------ blender
def test_round_trip(tiny_scene, tiny_dir):
    loaded = load_scene(tiny_dir)
    assert set(loaded.splits) == {"train", "val", "test"}
    assert loaded.near == tiny_scene.near and loaded.far == tiny_scene.far
    np.testing.assert_allclose(loaded.aabb, tiny_scene.aabb)
    for name, ref in tiny_scene.splits.items():
        got = loaded.splits[name]
        assert got.rgba.dtype == np.float32 and got.rgba.shape == ref.rgba.shape
        # straight 8-bit quantisation: |q(c) q(a) - c a| <= 0.5/255 + 0.5/255
        assert np.abs(got.rgba - ref.rgba).max() <= 1.0 / 255 + 1e-6
        assert got.names == tuple(f"{name}/r_{i}.png" for i in range(len(ref)))
        gc, rc = got.cameras, ref.cameras
        assert (gc.width, gc.height) == (rc.width, rc.height) and gc.distortion is None
        np.testing.assert_allclose(gc.c2w, rc.c2w, atol=1e-6)
        for f in ("fx", "fy", "cx", "cy"):
            np.testing.assert_allclose(getattr(gc, f), getattr(rc, f), rtol=1e-5)
    meta = json.loads((tiny_dir / "transforms_train.json").read_text())
    assert "camera_angle_x" in meta and "fl_x" not in meta  # plain Blender when intrinsics allow
    assert meta["frames"][1]["file_path"] == "./train/r_1" and len(meta["frames"][1]["transform_matrix"]) == 4


def test_round_trip_downscale(tiny_scene, tiny_dir):
    loaded = load_blender(tiny_dir, downscale=2, splits=("train",))
    assert set(loaded.splits) == {"train"}
    got, ref = loaded.splits["train"], tiny_scene.splits["train"]
    assert got.rgba.shape == (3, 8, 8, 4)
    assert np.abs(got.rgba - area_downscale(ref.rgba, 2)).max() <= 1.0 / 255 + 1e-6
    assert (got.cameras.width, got.cameras.height) == (8, 8)
    np.testing.assert_allclose(got.cameras.fx, ref.cameras.fx / 2, rtol=1e-5)
    np.testing.assert_allclose(got.cameras.cx, 4.0)


def test_round_trip_general_intrinsics(tiny_scene, tmp_path):
    """Intrinsics that camera_angle_x cannot express survive write_blender / load_blender."""
    import dataclasses
    tr = tiny_scene.splits["train"]
    cams = dataclasses.replace(tr.cameras, fy=tr.cameras.fy * 1.1, cx=tr.cameras.cx + np.arange(3, dtype=np.float32))
    scene = dataclasses.replace(tiny_scene, splits={"train": dataclasses.replace(tr, cameras=cams)})
    write_blender(scene, tmp_path)
    got = load_blender(tmp_path).splits["train"].cameras
    for f in ("fx", "fy", "cx", "cy"):
        np.testing.assert_allclose(getattr(got, f), getattr(cams, f), rtol=1e-5)


def test_cameras_only_splits_are_not_decoded(tiny_dir, tiny_scene):
    """``cameras_only``: the split's cameras and names without its images (what ``fit`` asks for its test split):
    images cut after their header (which gives the size) are never decoded (a decode would refuse them)."""
    full = load_blender(tiny_dir)
    for f in (tiny_dir / "test").glob("*.png"):
        data = f.read_bytes()
        f.write_bytes(data[:data.index(b"IDAT") + 8])  # the header chunks (the size) and no pixel data
    scene = load_blender(tiny_dir, splits=("train", "val"), cameras_only=("test",))
    assert set(scene.splits) == {"train", "val"} and set(scene.cameras_only) == {"test"}
    cams, names = scene.cameras_only["test"]
    assert names == full.splits["test"].names
    np.testing.assert_array_equal(cams.c2w, full.splits["test"].cameras.c2w)
    np.testing.assert_array_equal(cams.fx, full.splits["test"].cameras.fx)
    with pytest.raises(InputError):
        load_blender(tiny_dir)  # the images really are unreadable


def test_fit_records_the_cameras_of_the_split_it_does_not_load(tiny_run, tiny_blender_dir):
    """scene.json of a fit holds every split's cameras (``render --path test``, ``export cameras``), the test
    split's read without decoding its images."""
    meta = json.loads((tiny_run / "scene.json").read_text())
    test = load_blender(tiny_blender_dir, splits=("test",)).splits["test"]
    assert set(meta["cameras"]) == {"train", "val", "test"}
    assert meta["names"]["test"] == list(test.names)
    np.testing.assert_allclose(meta["cameras"]["test"]["c2w"], test.cameras.c2w, atol=1e-6)


def test_missing_val_test_allowed(tiny_dir):
    (tiny_dir / "transforms_val.json").unlink()
    (tiny_dir / "transforms_test.json").unlink()
    scene = load_scene(tiny_dir / "transforms_train.json")  # a transforms file also works
    assert set(scene.splits) == {"train"}


def test_area_downscale_hand_made():
    img = np.zeros((2, 4, 4), np.float32)
    img[0] = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    img[1] = 1.0
    img = np.moveaxis(img, 0, -1)  # [4, 4, 2]
    out = area_downscale(img, 2)
    assert out.shape == (2, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(out[..., 1], 1.0)
    np.testing.assert_allclose(area_downscale(img[None], 4)[0, 0, 0], [7.5, 1.0])
    with pytest.raises(ValueError):
        area_downscale(img, 3)


def test_load_downscale_is_premultiplied_area_filter(tmp_path):
    """A half-covered red/green block must average premultiplied colour, not straight colour."""
    img = np.zeros((4, 4, 4), np.uint8)
    img[0, 0] = (255, 0, 0, 255)      # opaque red
    img[0, 1] = (0, 255, 0, 51)       # faint green (alpha 0.2)
    img[1, 0] = (0, 0, 255, 0)        # colour under alpha 0 must not leak
    img[1, 1] = (255, 255, 255, 255)
    img[2:, 2:] = (10, 20, 30, 255)
    img[2:, :2, 3] = 255                # opaque black block, no alpha in the way
    _write_dataset(tmp_path, [img], {"camera_angle_x": 0.8})
    full = load_blender(tmp_path).splits["train"].rgba[0]
    half = load_blender(tmp_path, downscale=2).splits["train"].rgba[0]
    s = img.astype(np.float64) / 255
    premult = np.concatenate([s[..., :3] * s[..., 3:], s[..., 3:]], axis=-1)
    np.testing.assert_allclose(full, premult, atol=1e-6)
    # Downscaled images are held at 8 bits too (SplitData.pixels): exact up to that rounding.
    np.testing.assert_allclose(half, premult.reshape(2, 2, 2, 2, 4).mean(axis=(1, 3)), atol=1 / 255)
    np.testing.assert_allclose(half[0, 0], [(1 + 1) / 4, (0.2 + 1) / 4, 1 / 4, (1 + 0.2 + 0 + 1) / 4], atol=1 / 255)


def test_image_formats(tmp_path):
    """8-bit RGB (alpha 1), grey, and 16-bit RGBA at full precision."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    got = read_rgba(tmp_path / "rgb.png")
    np.testing.assert_allclose(got[..., :3], rgb / 255, atol=1e-6)
    np.testing.assert_allclose(got[..., 3], 1.0)
    iio.imwrite(tmp_path / "grey.png", rgb[..., 0])
    np.testing.assert_allclose(read_rgba(tmp_path / "grey.png")[..., 2], rgb[..., 0] / 255, atol=1e-6)
    for c in (3, 4):
        a16 = rng.integers(0, 65536, (3, 5, c), dtype=np.uint16)
        _write_png16(tmp_path / f"c{c}.png", a16)
        got = read_rgba(tmp_path / f"c{c}.png")
        s = a16 / 65535.0
        ref = s[..., :3] * (s[..., 3:] if c == 4 else 1.0)
        np.testing.assert_allclose(got[..., :3], ref, atol=2e-7)  # far below 8-bit steps (3.9e-3)
        if c == 4:
            np.testing.assert_allclose(got[..., 3], s[..., 3], atol=2e-7)


def test_intrinsics_fl_cx_w_h(tmp_path):
    imgs = [np.full((8, 12, 4), 200, np.uint8) for _ in range(3)]
    _write_dataset(tmp_path, imgs, {"fl_x": 20.0, "fl_y": 22.0, "cx": 5.5, "cy": 4.5, "w": 12, "h": 8})
    path = _edit_json(tmp_path, "train", lambda m: m["frames"][1].update({"fl_x": 30.0, "cy": 3.0}))
    cams = load_blender(tmp_path).splits["train"].cameras
    assert (cams.width, cams.height) == (12, 8)
    np.testing.assert_allclose(cams.fx, [20, 30, 20])
    np.testing.assert_allclose(cams.fy, [22, 22, 22])
    np.testing.assert_allclose(cams.cx, [5.5, 5.5, 5.5])
    np.testing.assert_allclose(cams.cy, [4.5, 3.0, 4.5])
    np.testing.assert_allclose(cams.c2w[2, 2, 3], 6.0)
    assert cams.c2w.shape == (3, 3, 4) and cams.c2w.dtype == np.float32
    small = load_blender(tmp_path, downscale=2).splits["train"].cameras
    assert (small.width, small.height) == (6, 4)
    np.testing.assert_allclose(small.fx, [10, 15, 10])
    np.testing.assert_allclose(small.cy, [2.25, 1.5, 2.25])
    # fl_x only: fy = fx and the principal point defaults to the centre; camera_angle_x fallback.
    _edit_json(tmp_path, "train", lambda m: [m.pop(k) for k in ("fl_y", "cx", "cy")])
    cams = load_blender(tmp_path).splits["train"].cameras
    np.testing.assert_allclose(cams.fy, cams.fx)
    np.testing.assert_allclose((cams.cx[0], cams.cy[0]), (6.0, 4.0))
    _edit_json(tmp_path, "train", lambda m: [m.pop("fl_x"), m["frames"][1].pop("fl_x"), m.update(camera_angle_x=0.5)])
    cams = load_blender(tmp_path).splits["train"].cameras
    np.testing.assert_allclose(cams.fx, focal_from_fov(12, 0.5), rtol=1e-6)
    assert path.exists()


def test_near_far_aabb(tiny_dir):
    _edit_json(tiny_dir, "train", lambda m: [m.pop(k) for k in ("near", "far", "aabb")])
    scene = load_blender(tiny_dir, splits=("test",))
    assert (scene.near, scene.far) == (2.0, 6.0) and set(scene.splits) == {"test"}
    np.testing.assert_allclose(scene.aabb, [[-1.5] * 3, [1.5] * 3])
    _edit_json(tiny_dir, "train", lambda m: m.update(near=0.5, far=3.0, aabb=[[-1, -2, -3], [1, 2, 3]]))
    scene = load_blender(tiny_dir, splits=("test",))
    assert (scene.near, scene.far) == (0.5, 3.0)
    np.testing.assert_allclose(scene.aabb, [[-1, -2, -3], [1, 2, 3]])


# ------------------------------------------------------------------------------------------------ errors
def test_error_missing_directory(tmp_path):
    _expect_error(tmp_path / "nope", "nope", "not found")
    with pytest.raises(InputError, match="nope"):
        load_scene(tmp_path / "nope")


def test_error_missing_transforms(tiny_dir):
    (tiny_dir / "transforms_train.json").unlink()
    _expect_error(tiny_dir, str(tiny_dir), "transforms_train.json")
    with pytest.raises(InputError, match="transforms_train.json"):
        load_scene(tiny_dir)


def test_error_unrecognised_format(tmp_path):
    with pytest.raises(InputError, match="unrecognised"):
        load_scene(tmp_path)


def test_error_malformed_json(tiny_dir):
    (tiny_dir / "transforms_val.json").write_text('{\n  "camera_angle_x": 0.5,\n  "frames": [,]\n}')
    _expect_error(tiny_dir, "transforms_val.json", "line 3", "column 14")


def test_error_json_not_object(tiny_dir):
    (tiny_dir / "transforms_train.json").write_text("[1, 2]")
    _expect_error(tiny_dir, "transforms_train.json", "object")


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.pop("frames"), "[frames]"),
    (lambda m: m.update(frames=[]), "[frames]"),
    (lambda m: m.pop("camera_angle_x"), "[camera_angle_x]"),
    (lambda m: m.update(camera_angle_x="wide"), "[camera_angle_x]"),
    (lambda m: m.update(camera_angle_x=-1), "[camera_angle_x]"),
    (lambda m: m["frames"][1].pop("file_path"), "[frames[1].file_path]"),
    (lambda m: m["frames"][1].update(file_path=3), "[frames[1].file_path]"),
    (lambda m: m["frames"][0].pop("transform_matrix"), "[frames[0].transform_matrix]"),
    (lambda m: m["frames"][2].update(transform_matrix=[[1, 0, 0, 0]] * 3), "[frames[2].transform_matrix]"),
    (lambda m: m["frames"][2].update(transform_matrix=[[1, 0, 0]] * 4), "[frames[2].transform_matrix]"),
    (lambda m: m["frames"][2].update(transform_matrix=[[1, 0, 0, 0], [0, 1], [0, 0, 1, 0], [0, 0, 0, 1]]),
     "[frames[2].transform_matrix]"),
    (lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(3, "1.5"), "[frames[2].transform_matrix]"),
    (lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(3, float("nan")), "[frames[2].transform_matrix]"),
    (lambda m: m["frames"][2]["transform_matrix"][1].__setitem__(0, float("inf")), "[frames[2].transform_matrix]"),
    (lambda m: m["frames"][1].update(transform_matrix=[[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]]),
     "[frames[1].transform_matrix]: the rotation part is not orthonormal"),
    (lambda m: m["frames"][1].update(transform_matrix=[[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]),
     "[frames[1].transform_matrix]: the rotation part is not orthonormal"),
    (lambda m: m["frames"][1].update(transform_matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0], [0, 0, 0, 1]]),
     "[frames[1].transform_matrix]: the rotation part is mirrored"),
    (lambda m: m["frames"][0].update(fl_x=0), "[frames[0].fl_x]"),
    (lambda m: m.update(w=16.5), "[w]"),
    (lambda m: m["frames"][1].update(h=0), "[frames[1].h]"),
    (lambda m: m.update(near=7.0), "[far]"),
    (lambda m: m.update(aabb=[[0, 0, 0], [1, 1]]), "[aabb]"),
])
def test_error_fields(tiny_dir, edit, field):
    path = _edit_json(tiny_dir, "train", edit)
    msg = _expect_error(tiny_dir, str(path), field)
    assert msg.startswith(str(path))


def test_error_transform_matrix_3x3_names_index(tiny_dir):
    path = _edit_json(tiny_dir, "test", lambda m: m["frames"][0].update(transform_matrix=np.eye(3).tolist()))
    _expect_error(tiny_dir, path, "frames[0].transform_matrix", "4x4", "3x3")


def test_missing_image_is_skipped_with_a_warning(tiny_dir, capsys):
    (tiny_dir / "train" / "r_2.png").unlink()
    scene = load_blender(tiny_dir)
    assert scene.splits["train"].names == ("train/r_0.png", "train/r_1.png") and len(scene.splits["train"].cameras) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "transforms_train.json" in err[0] and "skipped 1 of 3 frames" in err[0]
    assert "train/r_2" in err[0]


def test_error_every_image_of_a_split_missing(tiny_dir):
    (tiny_dir / "val" / "r_0.png").unlink()
    (tiny_dir / "val" / "r_1.png").unlink()
    _expect_error(tiny_dir, "transforms_val.json", "[frames]", "every one of the 2 frames is missing")


def test_error_unreadable_image(tiny_dir):
    bad = tiny_dir / "val" / "r_1.png"
    good = bad.read_bytes()
    bad.write_bytes(b"this is not a png")
    _expect_error(tiny_dir, str(bad), "cannot read image", "not a PNG")
    bad.write_bytes(b"")
    _expect_error(tiny_dir, str(bad), "cannot read image", "empty")
    bad.write_bytes(good[: len(good) // 2])
    _expect_error(tiny_dir, str(bad), "cannot read image")


def test_error_image_size_mismatch(tiny_dir):
    iio.imwrite(tiny_dir / "train" / "r_2.png", np.zeros((8, 16, 4), np.uint8))
    _expect_error(tiny_dir, str(tiny_dir / "train" / "r_2.png"), "16x8", "16x16", "train/r_0.png")


def test_error_image_size_vs_w_h(tiny_dir):
    _edit_json(tiny_dir, "train", lambda m: m.update(w=16, h=12))
    _expect_error(tiny_dir, str(tiny_dir / "train" / "r_0.png"), "16x16", "16x12", "w/h")


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, None])
def test_error_downscale_not_positive_int(tiny_dir, bad):
    _expect_error(tiny_dir, str(tiny_dir), "[downscale]", downscale=bad)


def test_error_downscale_not_divisible(tiny_dir):
    _expect_error(tiny_dir, "r_0.png", "[downscale]", "16x16", "3", downscale=3)


def test_error_splits(tiny_dir):
    _expect_error(tiny_dir, "[splits]", splits=())
    (tiny_dir / "transforms_test.json").unlink()
    _expect_error(tiny_dir, "[splits]", "test", splits=("test",))


# ---------------------------------------------------------------------------------------------- demo scene
def test_demo_deterministic():
    a = make_demo_scene(width=24, height=16, n_train=4, n_val=2, n_test=2, seed=3)
    b = make_demo_scene(width=24, height=16, n_train=4, n_val=2, n_test=2, seed=3)
    assert a.source == "demo" and list(a.splits) == ["train", "val", "test"]
    for k in a.splits:
        assert a.splits[k].rgba.shape == (len(a.splits[k]), 16, 24, 4)
        np.testing.assert_array_equal(a.splits[k].rgba, b.splits[k].rgba)
        np.testing.assert_array_equal(a.splits[k].cameras.c2w, b.splits[k].cameras.c2w)
    c = make_demo_scene(width=24, height=16, n_train=4, n_val=2, n_test=2, seed=4)
    assert not np.array_equal(a.splits["val"].cameras.c2w, c.splits["val"].cameras.c2w)


def test_demo_content():
    scene = make_demo_scene(width=32, height=32, n_train=6, n_val=2, n_test=2)
    assert (scene.near, scene.far) == (2.0, 6.0)
    np.testing.assert_allclose(scene.aabb, [[-1] * 3, [1] * 3])
    for split in scene.splits.values():
        rgba, cams = split.rgba, split.cameras
        assert rgba.dtype == np.float32 and rgba.min() >= 0 and rgba.max() <= 1
        assert np.all(rgba[..., :3] <= rgba[..., 3:] + 1e-6)  # premultiplied
        cov = rgba[..., 3].mean(axis=(1, 2))
        assert np.all((cov > 0.1) & (cov < 0.9)), cov
        assert np.any((rgba[..., 3] > 0.05) & (rgba[..., 3] < 0.95))  # anti-aliased edges
        assert np.all(rgba[:, 0, 0, 3] == 0)  # transparent background in the corner
        # cameras: radius 4, elevation 10-60 degrees, looking at the origin
        eyes = cams.c2w[:, :, 3]
        np.testing.assert_allclose(np.linalg.norm(eyes, axis=1), 4.0, rtol=1e-5)
        elev = np.degrees(np.arcsin(eyes[:, 2] / 4.0))
        assert np.all((elev >= 10 - 1e-3) & (elev <= 60 + 1e-3))
        forward = -cams.c2w[:, :, 2]
        np.testing.assert_allclose(forward, -eyes / 4.0, atol=1e-5)
    # several distinct colours: opaque pixels, quantised hues
    rgba = scene.splits["train"].rgba
    opaque = rgba[rgba[..., 3] > 0.999][:, :3]
    colours = {tuple(c) for c in np.round(opaque * 4).astype(int)}
    assert len(colours) >= 8
    # different views differ
    assert np.abs(rgba[0] - rgba[1]).mean() > 0.02


def test_demo_specular_is_view_dependent():
    """The same point on a glossy sphere: diffuse part identical, highlight only near the mirror direction."""
    prims = demo.demo_primitives()
    green = prims[3]
    light = demo._LIGHT_DIR.astype(np.float64)
    n = light + np.array([0.3, -0.2, 0.0])
    n /= np.linalg.norm(n)
    p = green.centre[:, 0] + green.r * n
    mirror = 2 * np.dot(n, light) * n - light  # view direction of the peak highlight
    other = n - 0.8 * mirror
    other /= np.linalg.norm(other)
    assert np.dot(other, n) > 0.2
    views = np.stack([mirror, other])
    rgba = demo.render_rays([green], (p + 3.0 * views).astype(np.float32), (-views).astype(np.float32))
    assert np.all(rgba[:, 3] == 1)
    assert rgba[0, :3].sum() > rgba[1, :3].sum() + 0.3  # highlight seen only from the mirror direction
    # a matte surface (no ks) looks the same from both directions
    matte = demo.Sphere(green.centre[:, 0], green.r, demo.Material(demo.solid((0.2, 0.6, 0.3))))
    rgba = demo.render_rays([matte], (p + 3.0 * views).astype(np.float32), (-views).astype(np.float32))
    np.testing.assert_allclose(rgba[0], rgba[1], atol=1e-5)


def test_demo_rays_match_cameras_module():
    cams = demo.demo_cameras("val", 2, 12, 8, seed=1)
    o_ref, d_ref = all_rays(cams)
    for v in range(2):
        o, d = demo.view_rays(cams, v)
        np.testing.assert_allclose(o, o_ref[v, 0, 0], atol=1e-6)
        np.testing.assert_allclose(d.reshape(8, 12, 3), d_ref[v], atol=1e-6)


# -------------------------------------------------------------------------------------------- real data
def test_lego_downscale_4():
    if not (LEGO / "transforms_train.json").is_file():
        pytest.skip(f"lego dataset not found at {LEGO}")
    scene = load_scene(LEGO, downscale=4, splits=("train",))
    tr = scene.splits["train"]
    assert tr.rgba.shape == (100, 100, 100, 4) and tr.rgba.dtype == np.float32
    cams = tr.cameras
    assert (cams.width, cams.height) == (100, 100)
    np.testing.assert_allclose(cams.fx, 138.8889, rtol=1e-4)
    np.testing.assert_allclose(cams.fy, cams.fx)
    np.testing.assert_allclose(cams.cx, 50.0)
    assert (scene.near, scene.far) == (2.0, 6.0)
    np.testing.assert_allclose(np.linalg.norm(cams.c2w[:, :, 3], axis=1), 4.03, atol=0.05)
    cov = tr.rgba[..., 3].mean()
    assert 0.1 < cov < 0.6
    assert np.all(tr.rgba[..., :3] <= tr.rgba[..., 3:] + 1e-6)
    assert tr.names[0] == "train/r_0.png"
