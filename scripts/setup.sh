#!/usr/bin/env bash
# Set up a fresh machine for Modelyard: a virtual environment with the package and its tools, the real helm and
# kubectl, and Prometheus (for the observability tests). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENTOML_DO_NOT_TRACK=true NO_ALBUMENTATIONS_UPDATE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch first, pinned: pip takes these builds from the machine's disk (the GPU machine brings its own 2.11).
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
.venv/bin/pip install -q -e ".[dev]"

# Debian's prometheus (and promtool) for the tests that run a real Prometheus server.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "setup: install Debian's prometheus package (apt-get install prometheus) for the observability tests" >&2
  fi
fi
# Real helm and a current kubectl, into ./.bin.
if [ -x scripts/install-kube-tools.sh ]; then
  bash scripts/install-kube-tools.sh
fi
echo "setup: done (activate with: . .venv/bin/activate)"
