#!/usr/bin/env bash
# One device call from the repository root, carrying .whl (bash bench/gpu_wheels.sh prepare): the gpu pipeline at
# several data.hostDecodeShare values against synthetic data, all in one process, with the machine's CPU use
# sampled every 5 s (vmstat.log).
#   SHARES=0,0.3,0.6 T=450 bash bench/results/2026-12-05-cpu-c/host_share_call.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD NO_ALBUMENTATIONS_UPDATE=1 BENTOML_DO_NOT_TRACK=true
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "CPUs: $(nproc)"
  python3 -c "import sys,torch,torchvision;print(sys.version.split()[0],torch.__version__,torchvision.__version__)"
  git rev-parse --short HEAD; } | tee "$OUT/hardware.txt"
python3 -c "import pydantic, bentoml, albumentations" 2>/dev/null || bash bench/gpu_wheels.sh install > "$OUT/install.log" 2>&1
start=$(date +%s)
(vmstat -n 5 > "$OUT/vmstat.log" 2>&1 &)
timeout ${T:-540} python3 bench/train_throughput.py --batch-size 256 --compile --steps 40 --warmup 15 --workers 14 \
  --data gpu --recipes modelyard --host-decode-shares ${SHARES:-0,0.25,0.5,1} --json "$OUT/train-host.json" 2>&1 \
  | grep -v "Warning\|warn(" | tee "$OUT/train-host.log"
pkill vmstat; echo "took $(( $(date +%s) - start )) s"
