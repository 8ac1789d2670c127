#!/usr/bin/env bash
# The access-log A/B of bench/RESULTS.md ("2026-12-02, last"): the same benchmark with BentoML's access log on and
# off, alternated twice, on the development machine. bash bench/results/2026-12-02-cpu-c/access_log_ab.sh OUT
set -u
out=${1:?usage: access_log_ab.sh OUT}
mkdir -p "$out"
for round in 1 2; do
  for variant in on off; do
    MODELYARD_ACCESS_LOG=$variant python bench/serving.py --image-size 32 --requests 3000 --clients 16 \
      --images-per-request 4 --deadline 15 --json "$out/access-log-$variant-$round.json" \
      > "$out/access-log-$variant-$round.log" 2>&1
    echo "$variant-$round rc=$?"
  done
done
