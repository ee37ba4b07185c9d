#!/usr/bin/env bash
# One run of the GPU figures (issue 14) on the GPU machine, which reaches no package registry; at most 9 minutes.
#
#   bash benchmarks/gpu_prepare.sh                 # here, first: .gpu_carry/ (wheels, lego, COMMIT)
#   bash benchmarks/gpu_run.sh --out "$OUT"        # there (the run tool's command; benchmarks/README.md)
#   bash benchmarks/gpu_run.sh --dry-run           # the rehearsal on this CPU: the same steps, tiny budgets
#   bash benchmarks/gpu_run.sh --out "$OUT" --startup   # instead of the suite: cold and warm start-up (issue 15),
#                                                  # benchmarks/startup_cache.py on the demo (no data; ~5 min)
#
# Installs the carried wheels, nerfkit's own among them (--no-deps, into a temp folder on PYTHONPATH: the
# machine's own JAX, Flax, Optax, Orbax, NumPy stay), then runs benchmarks/gpu_suite.py, which writes every result
# into the --out folder ($OUT there) and prints a table last; the log goes there too (gpu_run.log).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=""
STARTUP=""
OUT_DIR=${OUT:-}
SUITE_ARGS=()  # anything else goes to gpu_suite.py (e.g. --presets hash-fast)
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=--dry-run ;;
    --startup) STARTUP=1 ;;
    --out) OUT_DIR=$2; shift ;;
    *) SUITE_ARGS+=("$1") ;;
  esac
  shift
done
PY=${PYTHON:-python3}
CARRY=.gpu_carry
WORK=$(mktemp -d /tmp/nerfkit-gpu-run-XXXXXX)
OUT_DIR=${OUT_DIR:-$WORK/out}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_run.log"
exec > >(tee "$LOG") 2>&1
t0=$(date +%s)
echo "gpu_run.sh ${DRY:-(full run)}: $(date -u +%FT%TZ), out $OUT_DIR"
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "no nvidia-smi"

SITE="$WORK/site"
if ls "$CARRY"/wheels/nerfkit-*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$CARRY"/wheels/*.whl
  here=$(git rev-parse HEAD 2>/dev/null || true)
  [ -n "$here" ] && ! grep -q "^$here" "$CARRY/COMMIT" && echo "warning: $CARRY was prepared at $(cat "$CARRY/COMMIT"), the tree is at $here"
elif [ -z "$DRY" ]; then
  echo "no nerfkit wheel in $CARRY/wheels: run benchmarks/gpu_prepare.sh first and carry $CARRY" >&2; exit 1
else
  echo "dry run without $CARRY: nerfkit from this tree, this machine's packages"
  SITE=$PWD
fi
export PYTHONPATH="$SITE" PYTHONUNBUFFERED=1
export NERFKIT_COMMIT=$(cat "$CARRY/COMMIT" 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
export NERFKIT_COMPILE_CACHE="$WORK/jax-cache"   # shared by the suite and its nerfkit subprocesses
export XLA_PYTHON_CLIENT_PREALLOCATE=false       # the suite and its `nerfkit fit` share the GPU
"$PY" -c "import jax, nerfkit, tyro, dm_pix, splines; print('jax', jax.__version__, jax.devices(), 'nerfkit from', nerfkit.__file__)"
echo "installed in $(( $(date +%s) - t0 )) s"

if [ -n "$STARTUP" ]; then  # fit the demo 40 steps and render it 120 frames, each cold then warm (PNGs: no ffmpeg there)
  SIZES=(--repeats 3 --steps 40 --frames 120)
  [ -n "$DRY" ] && SIZES=(--repeats 1 --steps 4 --frames 3)
  timeout 500 "$PY" benchmarks/startup_cache.py "${SIZES[@]}" --pngs-only --name startup_cache_gpu --out-dir "$OUT_DIR"
  echo "gpu_run.sh --startup done in $(( $(date +%s) - t0 )) s; in $OUT_DIR: $(ls "$OUT_DIR" | tr '\n' ' ')"
  exit 0
fi

DATA=()
[ -d "$CARRY/lego" ] && DATA=(--data "$CARRY/lego")
[ -z "$DRY" ] && [ ${#DATA[@]} -eq 0 ] && { echo "no $CARRY/lego: run benchmarks/gpu_prepare.sh first" >&2; exit 1; }
timeout 530 "$PY" benchmarks/gpu_suite.py ${DRY} "${DATA[@]}" "${SUITE_ARGS[@]}" --out "$OUT_DIR"
echo "gpu_run.sh done in $(( $(date +%s) - t0 )) s; in $OUT_DIR: $(ls "$OUT_DIR" | tr '\n' ' ')"
