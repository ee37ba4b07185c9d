"""Progress of rendering and evaluation: one line with done / total, seconds per item and time left."""

from __future__ import annotations

import io
import time

from nerfkit.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_off_a_terminal():
    out = io.StringIO()
    bar = Progress(3, "rendering 16x16", unit="frame", every=0.0, stream=out)
    for _ in range(3):
        bar.update("mean PSNR 20.00")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("rendering 16x16: 1/3 frames, ") and " s/frame, ETA " in lines[0]
    assert lines[-1].startswith("rendering 16x16: 3/3 frames, ") and "s in all, mean PSNR 20.00" in lines[-1]


def test_plain_lines_are_rate_limited_but_the_last_one_is_printed():
    out = io.StringIO()
    bar = Progress(50, "evaluating", unit="view", every=3600.0, stream=out)
    for _ in range(50):
        bar.update()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]
    assert out.getvalue().startswith("evaluating: 50/50 views, ")


def test_a_terminal_gets_one_bar_redrawn_in_place():
    term = _Terminal()
    bar = Progress(4, "rendering 8x8", unit="frame", stream=term)
    for _ in range(4):
        time.sleep(0.11)  # tqdm redraws at most every 0.1 s
        bar.update("x")
    text = term.getvalue()
    bar.close()
    assert "\n" not in text.strip("\n") and "\r" in text  # redrawn in place, never a new line
    assert "rendering 8x8: 4/4 frames" in text and "s/frame" in text and "ETA" in text
