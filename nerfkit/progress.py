"""One-line progress of rendering many frames or views: done / total, seconds per item and time left.

On a terminal it is a tqdm bar redrawn in place; elsewhere (logs, pipes, CI) a plain line on stderr at most
every ``every`` seconds and once at the end, so a long render in a log file still says how far it got.
"""

from __future__ import annotations

import sys
import time


def status_line(desc: str, done: int, total: int, elapsed: float, unit: str = "frame", note: str = "") -> str:
    """The plain progress line: ``desc: done/total units, s/unit, ETA`` (``, note`` appended if given).

    >>> status_line("rendering 64x64", 3, 10, 1.5)
    'rendering 64x64: 3/10 frames, 0.50 s/frame, ETA 3.5 s'
    >>> status_line("evaluating", 4, 4, 2.0, unit="view", note="PSNR 27.10")
    'evaluating: 4/4 views, 0.50 s/view, 2.0 s in all, PSNR 27.10'
    """
    per = elapsed / max(done, 1)
    when = f"{elapsed:.1f} s in all" if done >= total else f"ETA {per * (total - done):.1f} s"
    return f"{desc}: {done}/{total} {unit}s, {per:.2f} s/{unit}, {when}" + (f", {note}" if note else "")


class Progress:
    """Progress of ``total`` items: call :meth:`update` after each one (with an optional note such as the
    running PSNR) and :meth:`close` at the end.

    Args:
      total: items to do; desc: what is being done; unit: what an item is (``frame``, ``view``).
      every: seconds between plain lines when stderr is not a terminal.
      stream: where to write (default ``sys.stderr``); a terminal gets a tqdm bar.
    """

    def __init__(self, total: int, desc: str, unit: str = "frame", every: float = 10.0, stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = sys.stderr if stream is None else stream
        self.done, self.start, self.last_line = 0, time.time(), time.time()
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=False,
                            bar_format="{desc}: {n_fmt}/{total_fmt} {unit}s |{bar}| {rate_inv_fmt} ETA {remaining}"
                                       "{postfix}")

    def update(self, note: str = "") -> None:
        """One more item done."""
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(1)
        elif self.done >= self.total or time.time() - self.last_line >= self.every:
            self.last_line = time.time()
            line = status_line(self.desc, self.done, self.total, time.time() - self.start, self.unit, note)
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
