#!/usr/bin/env bash
# The main job on a fresh machine: set up, then train on the bundled real dataset, package the model with BentoML,
# serve it on 127.0.0.1 and send it held-out images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BENTOML_DO_NOT_TRACK=true NO_ALBUMENTATIONS_UPDATE=1
exec .venv/bin/modelyard quickstart "$@"
