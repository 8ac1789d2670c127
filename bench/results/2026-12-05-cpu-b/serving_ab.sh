#!/usr/bin/env bash
# The next GPU session's serving A/B (bench/RESULTS.md, "2026-12-05, latest (CPU)"), one device call, from the
# repository root of a checkout at the commit of that entry:
#   bash bench/results/2026-12-05-cpu-b/serving_ab.sh OUT
# Runs the service's defaults with MODELYARD_BALANCE_KEEPALIVE off and on, alternated, on a copy with
# keepalive-balancer.patch applied; then, if time is left, with simplejpeg-decode.patch (its wheel must be carried:
# `bash bench/gpu_wheels.sh prepare <simplejpeg cp312 wheel>`). Each run stops being started when under 150 s of the
# call's 10 minutes are left.
set -u
out=${1:?usage: serving_ab.sh OUT}
out=$(mkdir -p "$out" && cd "$out" && pwd)
start=$(date +%s)
left() { echo $(( 585 - ($(date +%s) - start) )); }
export BENTOML_DO_NOT_TRACK=true PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "CPUs: $(nproc)"; } | tee "$out/hardware.txt"
here=$(pwd)
if ! python3 -c "import pydantic, bentoml, simplejpeg" 2>/dev/null; then
  if [ -f .whl/install.sh ]; then bash .whl/install.sh; else bash bench/gpu_wheels.sh install; fi > "$out/install.log" 2>&1
fi
for variant in balance:bench/results/2026-12-05-cpu-b/keepalive-balancer.patch jpeg:bench/results/2026-12-05-cpu/simplejpeg-decode.patch; do
  name=${variant%%:*}
  rm -rf "/tmp/$name" && mkdir "/tmp/$name" && tar --exclude=./.whl -cf - . | tar -xf - -C "/tmp/$name"
  (cd "/tmp/$name" && patch -p1 -s < "$here/${variant#*:}") && echo "patched $name"
done
for run in ${RUNS:-off:/tmp/balance:off on:/tmp/balance:on off2:/tmp/balance:off on2:/tmp/balance:on jpeg:/tmp/jpeg:off}; do
  IFS=: read -r name checkout balance <<< "$run"
  if [ "$(left)" -lt 150 ]; then echo "skip $name ($(left) s left)"; continue; fi
  t0=$(date +%s)
  (cd "$checkout" && MODELYARD_BALANCE_KEEPALIVE=$balance PYTHONPATH=$checkout:${PYTHONPATH:-} python3 bench/serving.py \
    --device cuda --backbone resnet50 --clients 64 --client-processes 6 --images-per-request 16 --deadline 8 \
    --requests 20000 --precision auto --pipeline gpu --workers auto --max-batch-size 128 --more-clients 128 \
    --more-multi-clients 128 --rates 3000 --json "$out/serving-$name.json") > "$out/serving-$name.log" 2>&1
  echo "$name rc=$? in $(( $(date +%s) - t0 )) s"
  grep -A12 '^phase' "$out/serving-$name.log"
done
