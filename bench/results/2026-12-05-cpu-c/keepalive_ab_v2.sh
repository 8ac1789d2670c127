#!/usr/bin/env bash
# CPU A/B of MODELYARD_BALANCE_KEEPALIVE with keepalive-balancer-v2.patch applied to CHECKOUT, alternated: off, on,
# off, on; the same load as 2026-12-05-cpu-b/keepalive_ab.sh measured the first balancer with.
#   bash bench/results/2026-12-05-cpu-c/keepalive_ab_v2.sh CHECKOUT OUT
set -u
checkout=${1:?checkout} out=${2:?out}
mkdir -p "$out"
cd "$checkout"
for round in 1 2; do
  for mode in off on; do
    echo "round $round $mode, load $(cut -d' ' -f1-3 /proc/loadavg)"
    MODELYARD_BALANCE_KEEPALIVE=$mode PYTHONPATH=$checkout timeout 900 python bench/serving.py --image-size 32 \
      --upload-size 256 --requests 2000 --clients 16 --images-per-request 4 --deadline 10 --workers 3 \
      --more-clients 32 --rates 150 --json "$out/keepalive-v2-$mode-$round.json" > "$out/keepalive-v2-$mode-$round.log" 2>&1
    tail -5 "$out/keepalive-v2-$mode-$round.log" | head -4
  done
done
