#!/usr/bin/env bash
# The GPU check of issue 16, at most ~5 minutes on one GPU: the CUDA tests, then stage-1 training images/s for
# resnet34-cifar at 32 px and resnext50 at 224 px, in fp32 and bf16 AMP, with streamed JPEGs decoded in loader
# workers and batched on the GPU (nvJPEG). Run from anywhere: bash benchmarks/gpu_check.sh
# Put the printed figures in benchmarks/README.md ("GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONPATH=$PWD

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

echo "== CUDA tests (the device-parametrised ones and the streaming path with decoding on the GPU)"
timeout 120 "$PYTHON" -m pytest -q -x tests/trainers/test_augment.py tests/trainers/test_streaming.py \
    tests/trainers/test_presets.py

speed() {
    timeout 60 "$PYTHON" benchmarks/stage1_speed.py --device cuda "$@" | tail -2 | tr '\n' ' '
    echo
}
echo "== stage-1 images/s"
for amp in off bf16; do
    speed --arch resnet34-cifar --size 32 --amp "$amp" --images 4096 --batch 128 --epochs 3
done
for amp in off bf16; do
    for decode in workers device; do
        speed --arch resnext50 --size 224 --amp "$amp" --decode "$decode" --images 512 --batch 64 --epochs 2
    done
done
