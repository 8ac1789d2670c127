#!/usr/bin/env bash
# The service A/B of bench/RESULTS.md ("2026-12-05, last", the development machine): the service decoding JPEG
# uploads with Pillow (BEFORE, a checkout without the patch) and with libjpeg-turbo straight into NumPy (AFTER, a
# checkout with simplejpeg-decode.patch applied), alternated twice. The model is cheap (resnet18 at 32 px) and the
# uploads are 256 px photos, so that the event loop's decoding weighs more. The bench/serving.py of the checkout this
# script lives in drives both (it has --upload-size).
#   bash bench/results/2026-12-05-cpu/jpeg_decode_ab.sh BEFORE_CHECKOUT AFTER_CHECKOUT OUT
set -u
before=${1:?usage: jpeg_decode_ab.sh BEFORE_CHECKOUT AFTER_CHECKOUT OUT}
after=${2:?usage: jpeg_decode_ab.sh BEFORE_CHECKOUT AFTER_CHECKOUT OUT}
out=${3:?usage: jpeg_decode_ab.sh BEFORE_CHECKOUT AFTER_CHECKOUT OUT}
bench=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
for round in 1 2; do
  for variant in old new; do
    checkout=$before
    [ "$variant" = new ] && checkout=$after
    PYTHONPATH=$checkout python "$bench/serving.py" --image-size 32 --upload-size 256 --requests 3000 \
      --clients 16 --images-per-request 4 --deadline 15 --json "$out/decode-$variant-$round.json" \
      > "$out/decode-$variant-$round.log" 2>&1
    echo "$variant-$round rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
