#!/usr/bin/env bash
# The GPU checks owed since the CUDA engine was written, as ONE prepared command of at most 8 minutes (a lent GPU
# comes with 15 minutes of device time in all, machine start included). It measures what matters most:
#   1. capture: ResNet-20 for 2 epochs (780 steps) as a whole-step CUDA graph and eagerly, in fp32 and in bf16,
#      same seed: the graph must reproduce the eager losses and errors (to float rounding);
#   2. speed: `resx bench` on ResNet-20 and ResNet-56 (common recipe vs resx, the ratios of He et al.-style nets);
#   3. accuracy: a short compare-plain grid, plain/residual 20 and 56 for 10 epochs, with its errors and img/s.
# Each part has its own time limit, so one that hangs cannot eat the others' time; whatever exists is summarised
# into $OUT/summary.json and $OUT/summary.md and archived into $OUT/gpu-checks.tgz (no checkpoints).
#
# Set-up on the development machine (the CIFAR-10 JPEG copy travels in .gpu/, ignored by git):
#     mkdir -p .gpu && cp ../shared/data/cifar10-jpeg.npz ../shared/data/unpack_cifar10_jpeg.py .gpu/
#     echo /.gpu/ >> .git/info/exclude
# then ONE device call, carry [".gpu"], timeout_s 540:
#     bash scripts/gpu-checks.sh
# Rehearse it on a CPU-only machine first (tiny synthetic data, short schedules; about two minutes):
#     GPU_CHECKS_REHEARSAL=1 OUT=/tmp/gpu-rehearsal/out bash scripts/gpu-checks.sh
set -uo pipefail
OUT=${OUT:-gpu-out}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 COLUMNS=100
if [ "${GPU_CHECKS_REHEARSAL:-0}" = 1 ]; then
  # The same commands on tiny data, so that a wrong option, folder or file name shows up here, not on the GPU.
  # Run folders live outside the checkout: nothing of the rehearsal is carried to the GPU machine.
  W=${TMPDIR:-/tmp}/gpu-rehearsal/work; export RESX_DATA=${TMPDIR:-/tmp}/gpu-rehearsal/data
  DATA=synthetic:train=512,test=128,size=8
  DEV="--device cpu" CAPTURE_EPOCHS=1 GRID_EPOCHS=1 BENCH="--seconds 0.3 --rounds 1" LIMIT=120
else
  if [ ! -d .gpu/cifar10-jpeg ]; then
    python3 .gpu/unpack_cifar10_jpeg.py .gpu/cifar10-jpeg .gpu/cifar10-jpeg.npz
  fi
  W=.gpu/work; export RESX_DATA=$PWD/.gpu/data
  DATA=imagefolder:.gpu/cifar10-jpeg
  DEV="--device cuda" CAPTURE_EPOCHS=2 GRID_EPOCHS=10 BENCH="--seconds 3 --rounds 3" LIMIT=150
fi
rm -rf "$W"; mkdir -p "$OUT" "$W"
resx() { timeout --signal=TERM "$LIMIT" python3 -m resx "$@"; }  # SIGTERM: resx checkpoints and stops
trap 'tar czf "$OUT/gpu-checks.tgz" --exclude="*.pt" -C "$(dirname "$W")" "$(basename "$W")"' EXIT
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi") > "$W/gpu.txt"
start=$(date +%s)
{
  echo "== 1. capture: graph vs eager, fp32 and bf16 (ResNet-20, $CAPTURE_EPOCHS epochs, seed 0)"
  for p in fp32 bf16; do
    resx train resnet20 --data $DATA $DEV --epochs $CAPTURE_EPOCHS --precision $p --out "$W/capture-graph-$p"
    resx train resnet20 --data $DATA $DEV --epochs $CAPTURE_EPOCHS --precision $p --no-graph --out "$W/capture-eager-$p"
  done
  echo "== 2. speed: resx bench (ResNet-20, ResNet-56)"
  resx bench --models resnet20,resnet56 $BENCH --data $DATA $DEV --out "$W/bench"
  echo "== 3. accuracy: compare-plain 20/56, $GRID_EPOCHS epochs"
  resx compare-plain --depths 20,56 --seeds 1 --epochs $GRID_EPOCHS --data $DATA $DEV --out "$W/grid"
  echo "== done in $(( $(date +%s) - start )) s"
} 2>&1 | tr '\r' '\n' | grep --line-buffered -v '━' | tee "$W/log.txt"
python3 scripts/gpu_checks_summary.py "$W" "$OUT" | tee "$W/summary.txt"
