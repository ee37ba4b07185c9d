"""Tests for nerfkit.visualize."""

import gc

import imageio.v2 as iio
import numpy as np
import pytest

from nerfkit import visualize


def test_to_uint8():
    out = visualize.to_uint8(np.array([[[-0.5, 0.0, 0.5], [1.0, 2.0, np.nan]]]))
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out, [[[0, 0, 128], [255, 255, 0]]])


# These warnings come from imageio-ffmpeg's *reader* (used only by this test), not from write_video.
@pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning", "ignore:os.fork:RuntimeWarning"
)
def test_video_roundtrip_pads_odd_size(tmp_path):
    h, w = 33, 31
    colours = np.array([[200, 40, 10], [20, 180, 230]], np.uint8)
    frames = [np.broadcast_to(colours[i % 2], (h, w, 3)).copy() for i in range(20)]
    path = tmp_path / "sub" / "v.mp4"
    assert visualize.write_video(path, frames, fps=10) == (34, 32)
    assert [p.name for p in path.parent.iterdir()] == ["v.mp4"]  # no temporary left behind
    reader = iio.get_reader(path, format="FFMPEG")
    try:
        assert tuple(reader.get_meta_data()["size"]) == (32, 34)  # (width, height)
        got = [f for f in reader]
    finally:
        reader.close()
    gc.collect()  # imageio-ffmpeg's reader leaves pipes for the GC; collect them inside this test
    assert len(got) == 20
    assert got[0].shape == (34, 32, 3)
    for i in (0, 1, 19):
        diff = np.abs(got[i].astype(int) - colours[i % 2].astype(int))
        assert diff.max() <= 6, diff.max()


def test_write_png_and_plot(tmp_path):
    img = np.linspace(0, 1, 4 * 5 * 3).reshape(4, 5, 3)
    visualize.write_png(tmp_path / "a.png", img)
    np.testing.assert_array_equal(iio.imread(tmp_path / "a.png"), visualize.to_uint8(img))
    visualize.plot_curves(tmp_path / "c.png", [1, 2, 3], {"loss": [1.0, 0.5, np.inf], "psnr": [10, 12, 14]},
                          "step", "value", "curves")
    assert iio.imread(tmp_path / "c.png").ndim == 3


def test_colormap_range_and_monotonic():
    ramp = np.tile(np.linspace(0.0, 1.0, 64), (3, 1))
    ramp[0, 0] = np.nan
    rgb = visualize.colormap(ramp, 0.0, 1.0, cmap="viridis")
    assert rgb.shape == (3, 64, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    np.testing.assert_array_equal(rgb[0, 0], 0.0)  # NaN -> black
    lum = rgb[1] @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lum) >= -1e-6) and lum[-1] > lum[0] + 0.5
    # Default percentile range and constant images don't crash.
    assert np.isfinite(visualize.colormap(np.full((4, 4), 3.0))).all()
    assert np.isfinite(visualize.colormap(np.full((4, 4), np.nan))).all()


@pytest.mark.parametrize("name", ["turbo", "viridis", "inferno"])
def test_colormap_is_matplotlibs_own_lookup(name, tmp_path, monkeypatch):
    """The colour table (kept in the cache directory, so a warm render skips importing matplotlib) gives
    exactly what matplotlib's colour map gives, read back or not, at the ends and between table entries."""
    import matplotlib

    from nerfkit import compile_cache

    t = np.concatenate([np.linspace(0.0, 1.0, 1001), [0.5 / 256, 1 / 256, 255 / 256, 1 - 1e-12]])
    want = matplotlib.colormaps[name](t)[..., :3].astype(np.float32)
    monkeypatch.setattr(compile_cache, "_active", None)
    visualize._lut.cache_clear()  # the table is also kept in memory, once per process
    np.testing.assert_array_equal(visualize.colormap(t, 0.0, 1.0, name), want)
    monkeypatch.setattr(compile_cache, "_active", tmp_path)
    for _ in ("kept", "read back"):
        visualize._lut.cache_clear()
        np.testing.assert_array_equal(visualize.colormap(t, 0.0, 1.0, name), want)
    assert len(list(tmp_path.glob("values/*.pkl"))) == 1
    with pytest.raises((KeyError, ValueError)):
        visualize.colormap(t, 0.0, 1.0, "no-such-map")


def test_error_map_and_depth():
    gt = np.random.default_rng(0).uniform(0, 1, (6, 7, 3)).astype(np.float32)
    pred = gt.copy()
    pred[0, 0] += 0.5
    emap = visualize.error_map(pred, gt, cmap="inferno")
    zero = visualize.colormap(np.zeros((1, 1)), 0.0, 1.0, "inferno")[0, 0]
    np.testing.assert_allclose(emap[1:, 1:], np.broadcast_to(zero, emap[1:, 1:].shape))
    assert np.abs(emap[0, 0] - zero).sum() > 0.5

    depth = np.linspace(2.0, 6.0, 6 * 7).reshape(6, 7)
    opacity = np.ones((6, 7))
    opacity[0, :] = 0.0
    rgb = visualize.depth_to_rgb(depth, opacity, near=2.0, far=6.0)
    assert rgb.shape == (6, 7, 3)
    np.testing.assert_allclose(rgb[0], 1.0)  # transparent -> white background
    assert not np.allclose(rgb[3], 1.0)


def test_video_errors_leave_nothing(tmp_path):
    frames = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)]
    with pytest.raises(ValueError):
        visualize.write_video(tmp_path / "bad.mp4", frames)
    with pytest.raises(ValueError):
        visualize.write_video(tmp_path / "empty.mp4", [])
    assert list(tmp_path.iterdir()) == []


def test_video_streams_finish_discard_and_report(tmp_path):
    frame = {"a": np.zeros((8, 8, 3), np.uint8), "b": np.full((8, 8, 3), 255, np.uint8)}
    done = tmp_path / "done"
    with visualize.VideoStreams({k: done / f"{k}.mp4" for k in frame}, fps=10, depth=1) as videos:
        for _ in range(6):  # more frames than the queue holds: the writers keep up
            videos.put(frame)
    assert sorted(p.name for p in done.iterdir()) == ["a.mp4", "b.mp4"]
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        with visualize.VideoStreams({k: stopped / f"{k}.mp4" for k in frame}, fps=10) as videos:
            videos.put(frame)
            raise KeyboardInterrupt
    assert not stopped.exists() or not list(stopped.iterdir())  # no video and no temporary file
    bad = tmp_path / "bad"
    with pytest.raises(ValueError, match="the first was"):  # a writer's error reaches the caller
        with visualize.VideoStreams({"a": bad / "a.mp4"}, fps=10) as videos:
            videos.put({"a": frame["a"]})
            for _ in range(8):
                videos.put({"a": np.zeros((4, 4, 3), np.uint8)})
    assert not list(bad.iterdir())
