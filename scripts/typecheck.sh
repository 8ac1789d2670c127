#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (operator/ → modelyard.operator), so it checks a view of the
# package made of symbolic links: build/typecheck/modelyard/{api,cli.py,...,operator,training,bento}.
set -euo pipefail
cd "$(dirname "$0")/.."
view=build/typecheck/modelyard
rm -rf build/typecheck && mkdir -p "$view"
for entry in modelyard/*; do ln -s "../../../$entry" "$view/$(basename "$entry")"; done
for part in operator training bento; do ln -s "../../../$part" "$view/$part"; done
mypy "$@" -p modelyard
# The dashboards are code too (grafana-foundation-sdk); they live beside the package, not in it.
exec mypy "$@" dashboards
