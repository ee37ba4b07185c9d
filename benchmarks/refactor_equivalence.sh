#!/usr/bin/env bash
# A refactor must not change what is computed: the same fits (fixed step counts, no time budget, so no
# wall-clock in the schedule) with two checkouts of nerfkit, then both checkpoints loaded by the second and
# their parameters, occupancy grids and losses compared. Writes benchmarks/results/<name>.json.
#
#   bash benchmarks/refactor_equivalence.sh /path/to/old-checkout /path/to/new-checkout [name]
#
# Each checkout's code is put first on PYTHONPATH (run it from a virtualenv that has nerfkit's dependencies).
# Lego (../shared/data/nerf_synthetic/lego) for the occupancy presets; the built-in scene for mipnerf.
set -euo pipefail
OLD=$(realpath "$1"); NEW=$(realpath "$2"); NAME=${3:-refactor_equivalence_cpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LEGO=${LEGO:-$ROOT/../shared/data/nerf_synthetic/lego}
WORK=$(mktemp -d)
for side in old new; do
  src=$OLD; [ $side = new ] && src=$NEW
  (cd "$src" && export PYTHONPATH="$src" &&
   nerfkit fit cpu-fast --data "$LEGO" --downscale 4 --steps 120 --train.val-views 0 --out "$WORK/$side-cpu-fast" &&
   nerfkit fit hash-fast --data "$LEGO" --downscale 4 --steps 120 --train.val-views 0 --out "$WORK/$side-hash-fast" &&
   nerfkit fit mipnerf --steps 30 --train.val-views 0 --out "$WORK/$side-mipnerf")
done
cd "$NEW" && PYTHONPATH="$NEW" python - "$WORK" "$NAME" "$OLD" "$NEW" <<'PY'
import json, subprocess, sys
import jax, numpy as np
sys.path.insert(0, "benchmarks")
from common import environment, write_result
from nerfkit import runs
work, name, old, new = sys.argv[1:5]
commit = lambda d: subprocess.run(["git", "rev-parse", "HEAD"], cwd=d, capture_output=True, text=True).stdout.strip()
res = {}
for p in ("cpu-fast", "hash-fast", "mipnerf"):
    a, b = runs.load_run(f"{work}/old-{p}"), runs.load_run(f"{work}/new-{p}")
    pairs = list(zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
    loss = lambda side: [json.loads(l)["loss"] for l in open(f"{work}/{side}-{p}/metrics.jsonl") if '"loss"' in l]
    res[p] = {"steps": [a.step, b.step], "max_abs_param_diff": max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                                                                    for x, y in pairs),
              "max_abs_param": max(float(np.max(np.abs(np.asarray(x)))) for x, _ in pairs),
              "final_loss": [loss("old")[-1], loss("new")[-1]]}
    if hasattr(a.sampler_state, "occupied"):
        res[p]["occupied_cells_differ"] = int(np.sum(np.asarray(a.sampler_state.occupied) != np.asarray(b.sampler_state.occupied)))
print(json.dumps(res, indent=1))
print("->", write_result(name, res, env=environment(), extra={"old_commit": commit(old), "new_commit": commit(new)}))
PY
rm -rf "$WORK"
