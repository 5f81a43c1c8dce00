#!/bin/sh
# Train the detector on one NVIDIA GPU machine in a single time-boxed call (how the shipped
# weights were made; see models/MODEL_CARD.md). Runs the "small" and "medium" architectures
# side by side, each with its own CPU workers degrading photos on the fly, then exports both.
#
#   models/train_gpu.sh PHOTOS OUTDIR [MINUTES] [WORKERS_PER_RUN]
#
# PHOTOS: training photos (Kodak24 and Val20 held out). Needs torch, kornia, opencv, onnx,
# onnxruntime and this project importable (pip install --no-deps -e .).
set -eu
photos=$1 out=$2 minutes=${3:-7} workers=${4:-7}
mkdir -p "$out"
for arch in small medium; do
    timeout $((${minutes%.*} * 60 + 90)) python3 -m camheal_train.train --data "$photos" --out "runs/gpu-$arch" --arch "$arch" \
        --device cuda --batch 128 --lr 2.5e-3 --warmup 300 --replay 6 --buffer 40000 \
        --steps 1000000 --time-limit "$minutes" --epoch-samples 5000000 --workers "$workers" \
        --threads 1 --ckpt-every 1000 --log-every 250 --w-cls 2 --w-img 6 \
        --mask-pos-weight 3 --no-progress > "$out/train-$arch.log" 2>&1 &
done
wait
for arch in small medium; do
    cp "runs/gpu-$arch/last.pt" "$out/$arch.pt"
    python3 -m camheal_train.export --ckpt "runs/gpu-$arch/last.pt" \
        --out "$out/detector-$arch.onnx" >> "$out/train-$arch.log" 2>&1 || true
done
