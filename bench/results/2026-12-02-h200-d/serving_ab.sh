#!/usr/bin/env bash
# The serving A/Bs of bench/RESULTS.md ("2026-12-02, evening", one H200), run on the GPU machine from the repository
# root. Each argument is one run, NAME:CHECKOUT:DECODE_THREADS (DECODE_THREADS empty: the switch is not passed, for a
# checkout without it). The checkouts are prepared by the caller, e.g.
#   cp -a . /tmp/threads && git -C /tmp/threads apply bench/results/2026-12-02-h200-c/decode-threads.patch
#   bash bench/results/2026-12-02-h200-d/serving_ab.sh OUT t0:/tmp/threads:0 t2:/tmp/threads:2
set -u
out=${1:?usage: serving_ab.sh OUT NAME:CHECKOUT:DECODE_THREADS...}
shift
# Absolute, since each run writes its JSON from inside its checkout.
out=$(mkdir -p "$out" && cd "$out" && pwd)
for run in "$@"; do
  IFS=: read -r name checkout threads <<< "$run"
  extra=()
  [ -n "$threads" ] && extra=(--decode-threads "$threads")
  (cd "$checkout" && PYTHONPATH=$checkout:${PYTHONPATH:-} python3 bench/serving.py --device cuda --backbone resnet50 \
    --clients 64 --client-processes 6 --images-per-request 16 --deadline 8 --requests 20000 --precision auto \
    --pipeline gpu --workers auto --max-batch-size 128 --more-clients 128 --rates 3000 "${extra[@]}" \
    --json "$out/serving-$name.json") > "$out/serving-$name.log" 2>&1
  echo "$name rc=$? $(grep -c '^done' "$out/serving-$name.log") phases"
  grep '^done' "$out/serving-$name.log"
done
