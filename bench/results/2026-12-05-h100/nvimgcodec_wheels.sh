#!/usr/bin/env bash
# nvImageCodec for the GPU machine, as this experiment carried it. Its wheel (25 MiB) beside bench/gpu_wheels.sh's
# 37 MiB does not fit the 64 MiB a device call may carry, so `slim` keeps only what the JPEG decoders need on
# CPython 3.12 (5 MiB zipped). The GPU machine has no `unzip`, hence Python's zipfile.
#
#   bash nvimgcodec_wheels.sh slim NVIMGCODEC_WHEEL NVJPEG_WHEEL   # here, after `bash bench/gpu_wheels.sh prepare`
#   bash nvimgcodec_wheels.sh install                               # there, after `bash bench/gpu_wheels.sh install`
# The wheels: nvidia-nvimgcodec-cu13==0.9.0.20 and nvidia-nvjpeg==13.3.2.43 (`pip download --no-deps
# --platform manylinux_2_28_x86_64 --only-binary=:all:`). libnvjpeg_ext finds libnvjpeg.so.13 through its RUNPATH
# ($ORIGIN/../../cu13/lib), so both must land in the same site-packages.
set -euo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
case "${1:-}" in
slim)
  scratch=$(mktemp -d)
  python3 -m zipfile -e "$2" "$scratch"
  keep=(nvidia_nvimgcodec_cu13-*.dist-info nvidia/nvimgcodec/__init__.py nvidia/nvimgcodec/libnvimgcodec.so.0
    nvidia/nvimgcodec/nvimgcodec_impl.cpython-312-x86_64-linux-gnu.so nvidia/nvimgcodec/extensions/libnvjpeg_ext.so.*
    nvidia/nvimgcodec/extensions/libjpeg_turbo_ext.so.*)
  # Not `python3 -m zipfile -c`, which stores a file under its base name.
  (cd "$scratch" && python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as out:
    for path in sys.argv[2:]:
        out.write(path)' "$OLDPWD/.whl/nvimgcodec-slim.zip" $(find ${keep[@]} -type f))
  cp "$3" .whl/
  du -sh .whl/nvimgcodec-slim.zip
  ;;
install)
  site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  python3 -m zipfile -e .whl/nvimgcodec-slim.zip "$site"
  # nvidia/ is a namespace package there (torch's CUDA wheels): the wheel's own nvidia/__init__.py is not carried.
  python3 -c "from nvidia import nvimgcodec; print('nvimgcodec', nvimgcodec.__version__)"
  ;;
*)
  echo "usage: bash nvimgcodec_wheels.sh slim NVIMGCODEC_WHEEL NVJPEG_WHEEL | install" >&2
  exit 2
  ;;
esac
