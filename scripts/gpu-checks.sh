#!/usr/bin/env bash
# The GPU checks the issues ask for, in steps that each fit one 10-minute command on the lent H100.
# Set-up (../shared/DEVICE.md): copy the CIFAR-10 JPEG copy into .gpu/ (ignored by git) and carry it:
#     mkdir -p .gpu && cp ../shared/data/cifar10-jpeg.npz ../shared/data/unpack_cifar10_jpeg.py .gpu/
# then on the device:  bash scripts/gpu-checks.sh STEP   with STEP one of:
#   smoke      CUDA path end to end on 2 epochs (graph + bf16, eager fp32), bench on one model (2 min)
#   train      issue 3: resnet20 and plain56, 20 epochs (lr /10 at 10 and 15), trained together
#   accuracy   issue 4: resnet20 20 epochs x 2 seeds, bf16+graph vs fp32 eager
#   bench      issue 4: resx bench on resnet20, resnet56, resnet110, plain56
#   degrade    issue 5: compare-plain quick profile for depths 20 and 56, 2 seeds
#   studies    issues 6 and 7: lesion and paths on the trained nets of `degrade` (timed)
# Everything goes under $OUT (the device tool brings it back).
set -euo pipefail
step=${1:-smoke}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ ! -d .gpu/cifar10-jpeg ]; then
  python3 .gpu/unpack_cifar10_jpeg.py .gpu/cifar10-jpeg .gpu/cifar10-jpeg.npz
fi
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 RESX_DATA=$PWD/.gpu/data
DATA=imagefolder:.gpu/cifar10-jpeg
resx() { python3 -m resx "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
case "$step" in
  smoke)
    resx train resnet20 --data $DATA --epochs 2 --out "$OUT/smoke-graph" 2>&1 | tail -5
    resx train resnet20 --data $DATA --epochs 2 --no-graph --precision fp32 --out "$OUT/smoke-eager" 2>&1 | tail -5
    resx bench --models resnet56 --seconds 5 --data $DATA --out "$OUT/bench-smoke" 2>&1 | tail -12 ;;
  train)
    resx compare-plain --depths 20,56 --seeds 1 --epochs 20 --data $DATA --out "$OUT/train20" 2>&1 | tail -20 ;;
  accuracy)
    for s in 0 1; do
      resx train resnet20 --data $DATA --epochs 20 --seed $s --out "$OUT/acc-bf16-graph-s$s" 2>&1 | tail -3
      resx train resnet20 --data $DATA --epochs 20 --seed $s --precision fp32 --no-graph --out "$OUT/acc-fp32-eager-s$s" 2>&1 | tail -3
    done ;;
  bench)
    resx bench --data $DATA --seconds 8 --out "$OUT/bench" 2>&1 | tail -20 ;;
  degrade)
    resx compare-plain --config experiments/degradation-quick.yaml --depths 20,56 --residual-depths "" --seeds 2 \
      --data $DATA --out "$OUT/degradation" 2>&1 | tail -25 ;;
  studies)
    resx train resnet110 --data $DATA --epochs 20 --warmup-lr 0.01 --out "$OUT/resnet110" 2>&1 | tail -3
    time resx lesion "$OUT/resnet110" "$OUT/degradation/plain56-seed0" --data $DATA --out "$OUT/lesion" 2>&1 | tail -25
    time resx paths "$OUT/resnet110" "$OUT/degradation/resnet56-seed0" "$OUT/degradation/plain56-seed0" --data $DATA --out "$OUT/paths" 2>&1 | tail -25 ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
