#!/usr/bin/env bash
# From the repository root: bash bench/results/2026-12-06-cpu/guard_ab.sh. Alternated: before (6d5eee6, trial parse
# on every request) and after (this checkout, plain-upload check), with a tiny model so that the request path
# dominates. Service CPU per request is the figure.
set -u
here=$(pwd)  # the repository root; BEFORE: a worktree at 6d5eee6 (git worktree add /tmp/before-guard 6d5eee6)
out=$(pwd)/bench/results/2026-12-06-cpu
for run in before:${BEFORE:-/tmp/before-guard} after:$(pwd) before2:${BEFORE:-/tmp/before-guard} after2:$(pwd); do
  IFS=: read -r name tree <<< "$run"
  (cd "$tree" && PATH=$here/.venv/bin:$PATH BENTOML_DO_NOT_TRACK=true PYTHONPATH="$tree" timeout 400 python bench/serving.py \
    --image-size 32 --upload-size 256 --requests 1500 --clients 16 --images-per-request 4 --deadline 8 --workers 2 \
    --json "$out/guard-ab-$name.json") > "$out/guard-ab-$name.log" 2>&1
  echo "$name rc=$?"; grep -E "^service|^direct" "$out/guard-ab-$name.log"
done
