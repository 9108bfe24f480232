#!/usr/bin/env bash
# The GPU checks the issues ask for, in steps that each fit one 10-minute command on the lent H100.
# Set-up here (../shared/DEVICE.md): copy the CIFAR-10 JPEG copy into .gpu/ (ignored by git) and carry it:
#     mkdir -p .gpu && cp ../shared/data/cifar10-jpeg.npz ../shared/data/unpack_cifar10_jpeg.py .gpu/
#     echo /.gpu/ >> .git/info/exclude
# then on the device (run with carry [".gpu"]):  bash scripts/gpu-checks.sh STEP   with STEP one of:
#   smoke      CUDA path end to end on 2 epochs (graph + bf16, and eager fp32), bench on one model
#   train      issue 3: resnet20 and plain56 (with their twins), 20 epochs, lr /10 at epochs 10 and 15
#   accuracy   issue 4: resnet20 20 epochs x 2 seeds, bf16+graph vs fp32 eager
#   bench      issue 4: resx bench on resnet20, resnet56, resnet110, plain56
#   degrade    issue 5: compare-plain quick profile for depths 20 and 56, 2 seeds
#   studies    issues 6 and 7: preresnet110 (Veit's net, 20 epochs) with and without stochastic depth, then
#              lesion and paths, timed (needs `degrade` first,
#              on the same warm machine: run folders live in .gpu/work, which stays while the machine is held)
# Run folders go to .gpu/work/STEP; the CSVs, JSONs, logs and figures come back as one archive $OUT/STEP.tgz
# (the device tool returns at most 8 files, two folders deep).
# Rehearse every step on a CPU-only machine first (tiny synthetic data, 1 epoch; a few minutes in all):
#     for s in smoke train accuracy bench degrade studies; do GPU_CHECKS_REHEARSAL=1 OUT=/tmp/gpu-rehearsal bash scripts/gpu-checks.sh $s; done
set -euo pipefail
step=${1:-smoke}
OUT=${OUT:-gpu-out}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 COLUMNS=120
if [ "${GPU_CHECKS_REHEARSAL:-0}" = 1 ]; then
  # Rehearsal on a CPU-only machine: the same commands, on tiny synthetic data with 1-epoch schedules, so that a
  # wrong option, folder name or missing file shows up here and not in the GPU session's 30 minutes.
  # Its run folders live outside the checkout, so that nothing of it is carried to the GPU machine.
  W=${TMPDIR:-/tmp}/gpu-rehearsal/work; export RESX_DATA=${TMPDIR:-/tmp}/gpu-rehearsal/data
  DATA=synthetic:train=512,test=128,size=8
  DEV="--device cpu" EPOCHS=1 SHORT=1 BENCH_SECONDS=1 SAMPLES="--samples 4" LESION="--draws 2 --max-k 3 --swaps 1..2"
else
  if [ ! -d .gpu/cifar10-jpeg ]; then
    python3 .gpu/unpack_cifar10_jpeg.py .gpu/cifar10-jpeg .gpu/cifar10-jpeg.npz
  fi
  W=.gpu/work; export RESX_DATA=$PWD/.gpu/data
  DATA=imagefolder:.gpu/cifar10-jpeg
  DEV="--device cuda" EPOCHS=20 SHORT=2 BENCH_SECONDS=8 SAMPLES="" LESION=""
fi
mkdir -p "$OUT" "$W"
resx() { python3 -m resx "$@"; }
trap 'tar czf "$OUT/$step.tgz" --exclude="*.pt" -C "$(dirname "$W")" "$(basename "$W")"' EXIT  # whatever happens, bring back what exists
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi") | tee "$W/gpu-$step.txt"
{
case "$step" in
  smoke)
    resx train resnet20 --data $DATA $DEV --epochs $SHORT --overwrite --out "$W/smoke-graph"
    resx train resnet20 --data $DATA $DEV --epochs $SHORT --no-graph --precision fp32 --overwrite --out "$W/smoke-eager"
    resx bench --models resnet56 --seconds $BENCH_SECONDS --data $DATA $DEV --out "$W/bench-smoke" ;;
  train)
    resx compare-plain --depths 20,56 --seeds 1 --epochs $EPOCHS --data $DATA $DEV --out "$W/train20" ;;
  accuracy)
    for s in 0 1; do
      resx train resnet20 --data $DATA $DEV --epochs $EPOCHS --seed $s --overwrite --out "$W/acc-bf16-graph-s$s"
      resx train resnet20 --data $DATA $DEV --epochs $EPOCHS --seed $s --precision fp32 --no-graph --overwrite \
        --out "$W/acc-fp32-eager-s$s"
    done ;;
  bench)
    resx bench --data $DATA $DEV --seconds $BENCH_SECONDS --out "$W/bench" ;;
  degrade)
    [ "$EPOCHS" = 20 ] && E="" || E="--epochs $EPOCHS"  # the quick profile's own schedule on the GPU
    resx compare-plain --config experiments/degradation-quick.yaml --depths 20,56 --residual-depths "" --seeds 2 \
      $E --data $DATA $DEV --out "$W/degradation" ;;
  studies)
    for sd in "" 0.5; do  # without and with stochastic depth (Huang et al. 2016: p_L = 0.5)
      run="$W/preresnet110${sd:+-sd$sd}"
      resume=""; [ -f "$run/checkpoint.pt" ] && resume="--resume"  # a second call finishes or skips it
      resx train preresnet110 --data $DATA $DEV --epochs $EPOCHS --warmup-lr 0.01 ${sd:+--stochastic-depth $sd} \
        $resume --out "$run"
    done
    time resx lesion "$W/preresnet110" "$W/preresnet110-sd0.5" "$W/degradation/plain56-seed0" --data $DATA $DEV $LESION \
      --out "$W/lesion"
    time resx paths "$W/preresnet110" "$W/degradation/resnet56-seed0" "$W/degradation/plain56-seed0" --data $DATA $DEV \
      $SAMPLES --out "$W/paths" ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
} 2>&1 | tr '\r' '\n' | grep --line-buffered -v '━' | tee "$W/log-$step.txt"
