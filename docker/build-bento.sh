#!/usr/bin/env bash
# Build the Bento of the prediction service from the repository, offline: the package's wheel into dist/, then
# `bentoml build` with bentofile.yaml (lock_packages: false). Extra arguments go to `bentoml build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENTOML_DO_NOT_TRACK=true NO_ALBUMENTATIONS_UPDATE=1
python=${PYTHON:-.venv/bin/python}
rm -rf dist
"$python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .
version=$("$python" -c 'import modelyard; print(modelyard.__version__)')
exec "$python" -m bentoml build --bentofile bentofile.yaml --version "$version" "$@"
