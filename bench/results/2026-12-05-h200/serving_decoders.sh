#!/usr/bin/env bash
# The serving A/B prepared in bench/RESULTS.md (2026-12-05): where a served JPEG is decoded, on the GPU machine.
# CHECKOUT is a copy with jpeg-decode-in-batch-nvimgcodec.patch applied (the 2026-12-02 experiment rebased, plus the
# nvImageCodec switch of training/gpu_pipeline.py). Each argument is one run, NAME:JPEG_DECODE:DECODER, where
# JPEG_DECODE is the service's MODELYARD_JPEG_DECODE (host: PIL on the event loop; device: in the batch call) and
# DECODER is MODELYARD_JPEG_DECODER (torchvision: nvJPEG's CUDA decoder; nvimgcodec: the hardware engines first).
#   bash serving_decoders.sh OUT CHECKOUT host:host:torchvision tv:device:torchvision hw:device:nvimgcodec
set -u
out=${1:?usage: serving_decoders.sh OUT CHECKOUT NAME:JPEG_DECODE:DECODER...}
checkout=${2:?}
shift 2
out=$(mkdir -p "$out" && cd "$out" && pwd)
for run in "$@"; do
  IFS=: read -r name where decoder <<< "$run"
  (cd "$checkout" && MODELYARD_JPEG_DECODER=$decoder PYTHONPATH=$checkout:${PYTHONPATH:-} python3 bench/serving.py \
    --device cuda --backbone resnet50 --clients 64 --client-processes 6 --images-per-request 16 --deadline 8 \
    --requests 20000 --precision auto --pipeline gpu --workers auto --max-batch-size 128 --more-clients 128 \
    --rates 3000 --jpeg-decode "$where" --json "$out/serving-$name.json") 2>&1 | grep -v "nvjpeg2k\|nvtiff\|^Note" \
    > "$out/serving-$name.log"
  echo "$name rc=$? $(grep -c '^done' "$out/serving-$name.log") phases"
  grep '^done' "$out/serving-$name.log"
done
