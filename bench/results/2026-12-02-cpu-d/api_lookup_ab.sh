#!/usr/bin/env bash
# The A/B of bench/RESULTS.md ("2026-12-02, final", the development machine): the service with BentoML's API caller
# built at every lookup (OLD, a checkout of the commit before) and built once per instance (this checkout),
# alternated twice. bash bench/results/2026-12-02-cpu-d/api_lookup_ab.sh OLD_CHECKOUT OUT
set -u
old=${1:?usage: api_lookup_ab.sh OLD_CHECKOUT OUT}
out=${2:?usage: api_lookup_ab.sh OLD_CHECKOUT OUT}
new=$(cd "$(dirname "$0")/../../.." && pwd)
mkdir -p "$out"
for round in 1 2; do
  for variant in old new; do
    checkout=$old
    [ "$variant" = new ] && checkout=$new
    PYTHONPATH=$checkout python "$checkout/bench/serving.py" --image-size 32 --requests 3000 --clients 16 \
      --images-per-request 4 --deadline 15 --json "$out/lookup-$variant-$round.json" \
      > "$out/lookup-$variant-$round.log" 2>&1
    echo "$variant-$round rc=$?"
  done
done
