#!/usr/bin/env bash
# The next GPU session's training A/B for target 2 (bench/RESULTS.md, "2026-12-05, latest (CPU)"), one device call,
# from the repository root with .whl carried (bench/gpu_wheels.sh; nvImageCodec as in results/2026-12-05-h100/):
#   bash bench/results/2026-12-05-cpu-b/training_ab.sh OUT
# nvImageCodec's hardware decoder handing the augmentation CHW views of its buffers (nvimgcodec-decoder-v3.patch: no
# copy per image; the resample's stack is the one copy), against torchvision's nvJPEG, each compiled and with CUDA
# graphs, in the same call; first, which of its two nvJPEG paths torchvision takes for these JPEGs (hw_path_probe.py).
set -u
out=${1:?usage: training_ab.sh OUT}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 BENTOML_DO_NOT_TRACK=true NO_ALBUMENTATIONS_UPDATE=1 PYTHONPATH=$PWD
# The wheels carried in .whl: bench/gpu_wheels.sh prepare, and nvImageCodec through
# results/2026-12-05-h100/nvimgcodec_wheels.sh.
install() {
  if [ -f .whl/install.sh ]; then bash .whl/install.sh; else
    bash bench/gpu_wheels.sh install && bash bench/results/2026-12-05-h100/nvimgcodec_wheels.sh install; fi
}
start=$(date +%s); stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/hardware.txt"
python3 -c "import pydantic, bentoml; from nvidia import nvimgcodec" 2>/dev/null || install > "$out/install.log" 2>&1
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export LD_LIBRARY_PATH=$site/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}
patch -p1 -s < bench/results/2026-12-05-cpu-b/nvimgcodec-decoder-v3.patch && echo patched
stamp "which nvJPEG path torchvision takes for these JPEGs"
timeout 60 python3 bench/results/2026-12-05-cpu-b/hw_path_probe.py 64 2>&1 | tee "$out/hw-path.log"
stamp "the augmentation on one batch of 256: before, now (colour jitter, flips, rotations on their images only)"
for config in default every-step; do
  for module in bench/results/2026-12-05-cpu-b/gpu_augment_before.py ""; do
    timeout 120 python3 bench/results/2026-12-05-cpu-b/augment_ab.py --device cuda --batch 256 --repeat 10 \
      --config "$config" ${module:+--module "$module"} 2>&1 | tee -a "$out/augment.log"
  done
done
for run in ${RUNS:-nvimgcodec:gpu-pipeline torchvision:gpu-pipeline}; do
  decoder=${run%%:*} data=${run##*:}
  stamp "train $decoder $data"
  MODELYARD_JPEG_DECODER=$decoder timeout 240 python3 bench/train_throughput.py --batch-size 256 --compile \
    --steps 40 --warmup 15 --workers 14 --data "$data" --recipes modelyard --cuda-graphs \
    --json "$out/train-$decoder.json" 2>&1 | grep -v "nvjpeg2k\|nvtiff\|^Note" | tee "$out/train-$decoder.log"
done
stamp done
