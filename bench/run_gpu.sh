#!/usr/bin/env bash
# The GPU benchmark set of bench/RESULTS.md in one command, on a machine with one NVIDIA GPU and PyTorch:
# training throughput (synthetic, the CPU pipeline, the GPU pipeline; each against the proposal's recipe in the same
# run), then serving (the real Bento service against its model called directly). Figures and logs go to OUTPUT.
# `profile` runs the service's defaults at 64 and 128 clients with every process's stacks sampled (bench/sampling:
# py-spy records a handful of samples on the GPU machine), and writes where its CPU goes to OUTPUT/shares.txt.
#
#   bash bench/run_gpu.sh OUTPUT [train|serving|all|profile]
#
# HOST_DECODE_SHARES=0,0.3 sweeps data.hostDecodeShare in the gpu pipeline's training run (0 alone by default: on an
# H100 every share measured slowed training, bench/RESULTS.md 2026-12-06).
#
# Modelyard must be importable (an install, or PYTHONPATH=<checkout> beside its dependencies; the GPU machine lacks
# some of them, and bench/gpu_wheels.sh carries them there).
set -uo pipefail
out=${1:?usage: bash bench/run_gpu.sh OUTPUT [train|serving|all|profile]}
what=${2:-all}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1 BENTOML_DO_NOT_TRACK=true NO_ALBUMENTATIONS_UPDATE=1
python=${PYTHON:-python3}
status=0

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "CPUs: $(nproc)"
  "$python" -c "import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__)"
  git rev-parse --short HEAD 2>/dev/null || true
} | tee "$out/hardware.txt"

if [ "$what" = train ] || [ "$what" = all ]; then
  workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
  "$python" bench/train_throughput.py --batch-size 256 --compile --steps 40 --warmup 15 --workers "$workers" \
    --data all --frozen-batch-norm --cuda-graphs --host-decode-shares "${HOST_DECODE_SHARES:-0}" \
    --json "$out/train.json" 2>&1 | tee "$out/train.log" || status=1
fi
if [ "$what" = serving ] || [ "$what" = all ]; then
  load=(--device cuda --backbone resnet50 --clients 64 --client-processes 6 --images-per-request 16 --deadline 30)
  # The service as it was configured before (fp32, host preprocessing, eager, one worker): the same-run baseline.
  "$python" bench/serving.py "${load[@]}" --requests 1500 --precision fp32 --pipeline cpu --workers 1 \
    --cuda-graphs off --json "$out/serving-before.json" 2>&1 | tee "$out/serving-before.log" || status=1
  # SERVING_RUNS: "<workers>:<cuda graphs on|off>" a run; by default one worker eager and graphed (the graphs' own
  # gain), then the service's defaults (auto workers: 15 on a 16-core GPU machine without a memory limit).
  for run in ${SERVING_RUNS:-1:off 1:on auto:on}; do
    workers=${run%%:*} graphs=${run##*:}
    # The defaults also against the target's own terms: more clients, and open loops at 2,000 and 3,000 requests/s.
    capacity=()
    [ "$workers" = auto ] && capacity=(--more-clients 128 --more-multi-clients 128 --rates 2000 3000)
    # Enough requests that the phases of the fastest configuration run for seconds, not one; the deadline bounds the rest.
    "$python" bench/serving.py "${load[@]}" --requests 30000 --precision auto --pipeline gpu --workers "$workers" \
      --cuda-graphs "$graphs" --max-batch-size 128 "${capacity[@]}" \
      --json "$out/serving-${workers}w-graphs-$graphs.json" 2>&1 |
      tee "$out/serving-${workers}w-graphs-$graphs.log" || status=1
  done
fi
if [ "$what" = profile ]; then
  "$python" bench/serving.py --device cuda --backbone resnet50 --clients 64 --client-processes 6 \
    --images-per-request 16 --deadline 12 --requests 30000 --precision auto --pipeline gpu --workers auto \
    --max-batch-size 128 --more-clients 128 --sample-stacks "$out/stacks" --json "$out/serving-sampled.json" 2>&1 |
    tee "$out/serving-sampled.log" || status=1
  "$python" bench/sampling/shares.py "$out"/stacks/*.txt --top 60 > "$out/shares.txt" || status=1
fi
exit "$status"
