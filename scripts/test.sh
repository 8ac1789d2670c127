#!/usr/bin/env bash
# The test command: set up (idempotent), then lint, type-check and run every test. Exits non-zero on any failure,
# including a pytest run that collected nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BENTOML_DO_NOT_TRACK=true NO_ALBUMENTATIONS_UPDATE=1
export PATH="$PWD/.bin:$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
bash scripts/typecheck.sh
echo "== CRDs match the models"
modelyard crds --check
echo "== pytest"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
