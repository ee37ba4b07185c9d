"""The renderer's view loop: ``render_views`` dispatches the next view before it hands back this one, and gives
exactly what rendering the views one by one gives, in the order asked for."""

from __future__ import annotations

import numpy as np

from nerfkit import renderer, runs
from nerfkit.types import background_rgb


def test_render_views_pipelined_equals_one_by_one(tiny_run, monkeypatch):
    run = runs.load_run(tiny_run)
    cams = run.meta.cameras["train"]
    fn = renderer.make_render_fn(run.graphdef, run.sampler, background_rgb(run.meta.background))
    order = [2, 0, 1]
    one_by_one = [renderer.render_view(fn, run.params, run.sampler_state, cams, i, 64) for i in order]
    events = []
    dispatch, collect = renderer.dispatch_view, renderer.collect
    monkeypatch.setattr(renderer, "dispatch_view", lambda *a, **k: events.append(f"dispatch {a[4]}") or dispatch(*a, **k))
    monkeypatch.setattr(renderer, "collect", lambda p: events.append("collect") or collect(p))
    views = renderer.render_views(fn, run.params, run.sampler_state, cams, order, 64)
    for want, got in zip(one_by_one, views, strict=True):
        events.append("yield")
        assert want.keys() == got.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    # The next view is on its way before this one is handed back.
    assert events == ["dispatch 2", "collect", "dispatch 0", "yield", "collect", "dispatch 1", "yield", "collect", "yield"]
    assert list(renderer.render_views(fn, run.params, run.sampler_state, cams, [], 64)) == []
    assert len({float(v["rgb"].sum()) for v in one_by_one}) == 3  # three different views
