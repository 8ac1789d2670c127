#!/usr/bin/env bash
# The next GPU session's serving A/B of the rate-limited keep-alive balancer (bench/RESULTS.md, "2026-12-05, night
# (CPU)"), one device call, from the repository root of a checkout at that entry's commit:
#   bash bench/results/2026-12-05-cpu-c/serving_ab_v2.sh OUT
# Runs the service's defaults with MODELYARD_BALANCE_KEEPALIVE off and on, alternated, on a copy with
# keepalive-balancer-v2.patch applied. DEADLINE sets each phase's seconds (8: four runs fit one call; 30 for a
# steadier open loop, two runs). A run is not started with under 150 s of the call's 10 minutes left. PATCH names
# another balancer patch to apply instead (the first one: bench/results/2026-12-05-cpu-b/keepalive-balancer.patch).
set -u
out=${1:?usage: serving_ab_v2.sh OUT}
out=$(mkdir -p "$out" && cd "$out" && pwd)
start=$(date +%s)
left() { echo $(( 585 - ($(date +%s) - start) )); }
export BENTOML_DO_NOT_TRACK=true PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "CPUs: $(nproc)"; } | tee "$out/hardware.txt"
python3 -c "import pydantic, bentoml" 2>/dev/null || bash bench/gpu_wheels.sh install > "$out/install.log" 2>&1
here=$(pwd)
rm -rf /tmp/balance-v2 && mkdir /tmp/balance-v2 && tar --exclude=./.whl -cf - . | tar -xf - -C /tmp/balance-v2
patch_file=${PATCH:-bench/results/2026-12-05-cpu-c/keepalive-balancer-v2.patch}
(cd /tmp/balance-v2 && patch -p1 -s < "$here/$patch_file") && echo "patched with $patch_file"
for run in ${RUNS:-off:off on:on off2:off on2:on}; do
  IFS=: read -r name balance <<< "$run"
  if [ "$(left)" -lt 150 ]; then echo "skip $name ($(left) s left)"; continue; fi
  t0=$(date +%s)
  (cd /tmp/balance-v2 && MODELYARD_BALANCE_KEEPALIVE=$balance PYTHONPATH=/tmp/balance-v2:${PYTHONPATH:-} python3 \
    bench/serving.py --device cuda --backbone resnet50 --clients 64 --client-processes 6 --images-per-request 16 \
    --deadline "${DEADLINE:-8}" --requests 20000 --precision auto --pipeline gpu --workers auto --max-batch-size 128 \
    --more-clients 128 --more-multi-clients 128 --rates 3000 --json "$out/serving-$name.json") \
    > "$out/serving-$name.log" 2>&1
  echo "$name rc=$? in $(( $(date +%s) - t0 )) s"
  grep -A12 '^phase' "$out/serving-$name.log"
done
