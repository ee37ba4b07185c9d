#!/usr/bin/env bash
# Build .gpu_carry/ for one run of benchmarks/gpu_run.sh on the GPU machine (which reaches no package registry).
#
#   bash benchmarks/gpu_prepare.sh [LEGO_DIR]     # default ../shared/data/nerf_synthetic/lego
#
# .gpu_carry/ (git-ignored; the run tool's `carry` takes it) holds:
#   wheels/  nerfkit's own wheel, built from this tree (the run installs it with --no-deps), and the
#            packages nerfkit needs that the GPU image lacks (pip download for CPython 3.12, manylinux
#            x86-64, the versions tested here): tyro, docstring-parser, typeguard, typing-extensions
#            (typeguard needs >= 4.14), dm-pix, splines. Not carried: imageio-ffmpeg (only the mp4s of
#            `nerfkit render` need it; its wheel is 65 MiB, more than the 64 MiB a run may carry with the
#            data) and pycolmap (`nerfkit data colmap`).
#   lego/    lego's train (100 views) and test (200 views) splits at 400x400, RGBA PNGs as they are (val is
#            left out: the suite validates on test views)
#   COMMIT   `git rev-parse HEAD` (+ "-dirty"): the GPU machine gets the working tree without .git
# and prints what travels (the run tool's limit: 64 MiB for the working tree and carried paths together).
set -euo pipefail
cd "$(dirname "$0")/.."
LEGO=${1:-../shared/data/nerf_synthetic/lego}
PY=${PYTHON:-python3}
CARRY=.gpu_carry
WHEELS=(tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 typing-extensions==4.16.0 dm-pix==0.4.5 splines==0.3.3)

rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/lego"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$CARRY/wheels" "${WHEELS[@]}"
"$PY" -m pip wheel -q --no-deps -w "$CARRY/wheels" . >"$CARRY/wheel_build.log" 2>&1 || { cat "$CARRY/wheel_build.log"; exit 1; }
rm -rf build ./*.egg-info
for split in train test; do
  cp "$LEGO/transforms_$split.json" "$CARRY/lego/"
  cp -r "$LEGO/$split" "$CARRY/lego/$split"
done
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
echo "$commit" > "$CARRY/COMMIT"
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry_kib=$(du -sk "$CARRY" | cut -f1)
echo "wheels: $(ls "$CARRY/wheels" | tr '\n' ' ')"
echo "lego: $(ls "$CARRY/lego/train" | wc -l) train + $(ls "$CARRY/lego/test" | wc -l) test views"
echo "travels: working tree $((tree_kib / 1024)) MiB + $CARRY $((carry_kib / 1024)) MiB = $(((tree_kib + carry_kib) / 1024)) MiB (limit 64)"
if [ $((tree_kib + carry_kib)) -gt $((64 * 1024)) ]; then echo "too large for one run" >&2; exit 1; fi
