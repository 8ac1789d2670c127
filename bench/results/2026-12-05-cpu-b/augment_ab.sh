#!/usr/bin/env bash
# The colour-jitter-on-its-images-only change against the commit before it, on the CPU, alternated twice:
#   bash bench/results/2026-12-05-cpu-b/augment_ab.sh OLD_CHECKOUT NEW_CHECKOUT OUT
set -u
old=${1:?old checkout} new=${2:?new checkout} out=${3:?out}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
for round in 1 2; do
  for side in old new; do
    checkout=$old; [ "$side" = new ] && checkout=$new
    for config in default every-step; do
      echo "round $round $side $config load $(cut -d' ' -f1 /proc/loadavg): $(PYTHONPATH=$checkout python "$here/augment_ab.py" \
        "$out/augment-$side-$config.pt" --config "$config" --repeat 5)"
    done
  done
done
for config in default every-step; do
  echo "$config: $(python "$here/augment_ab.py" --compare "$out/augment-old-$config.pt" "$out/augment-new-$config.pt")"
done
