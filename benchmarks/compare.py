"""Before/after comparison of result JSONs measured back to back on one machine (a refactor must not move them).

    python benchmarks/compare.py --name spine_before_after_cpu \\
        --before results/throughput_spine_before_{2,3}.json results/lego_cpu_{cpu-fast,hash-fast}_spine_before.json \\
        --after  results/throughput_spine_after_{1,2}.json  results/lego_cpu_{cpu-fast,hash-fast}_spine_after.json

Reads ``throughput.py`` results (training rays/s and the 100x100 render time of each preset) and
``lego_cpu.py`` results (PSNR, SSIM, steps of one preset), averages the repeats of each side, and writes
``benchmarks/results/<name>.json`` with both sides, the after/before ratios (PSNR as a difference in dB),
the commits the files record and the files themselves. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, write_result  # noqa: E402


def figures(paths: list[Path]) -> tuple[dict[str, list[float]], set[str]]:
    """{figure name: values over the files}, and the commits the files were measured at."""
    out, commits = {}, set()
    for p in paths:
        d = json.loads(Path(p).read_text())
        commits.add(d.get("commit", "unknown"))
        f = d["figures"]
        if "psnr" in f:  # lego_cpu.py
            for k in ("psnr", "ssim", "steps"):
                out.setdefault(f"{f['preset']} lego-cpu-10min {k}", []).append(float(f[k]))
            continue
        for preset, row in f.items():  # throughput.py
            out.setdefault(f"{preset} training rays/s", []).append(float(row["rays_per_s"]))
            for size, s in row["render_seconds"].items():
                out.setdefault(f"{preset} render {size} s", []).append(float(s))
    return out, commits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, nargs="+", required=True)
    ap.add_argument("--after", type=Path, nargs="+", required=True)
    ap.add_argument("--name", default="before_after")
    args = ap.parse_args()
    before, commits_before = figures(args.before)
    after, commits_after = figures(args.after)
    rows = {}
    for k in before:
        if k not in after:
            continue
        b, a = float(np.mean(before[k])), float(np.mean(after[k]))
        rows[k] = {"before": before[k], "after": after[k], "before_mean": b, "after_mean": a,
                   ("after_minus_before" if k.endswith("psnr") else "after_over_before"): a - b if k.endswith("psnr") else a / b}
    print(f"{'figure':<40}{'before':>12}{'after':>12}{'change':>10}")
    for k, r in rows.items():
        change = r.get("after_minus_before")
        change = f"{change:+.2f} dB" if change is not None else f"{r['after_over_before']:.3f}x"
        print(f"{k:<40}{r['before_mean']:>12.4g}{r['after_mean']:>12.4g}{change:>10}")
    rel = lambda ps: [str(Path(p).resolve().relative_to(ROOT)) if Path(p).resolve().is_relative_to(ROOT) else str(p)  # noqa: E731
                      for p in ps]
    path = write_result(args.name, rows, env=environment(),
                        extra={"commits_before": sorted(commits_before), "commits_after": sorted(commits_after),
                               "files_before": rel(args.before), "files_after": rel(args.after)})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
