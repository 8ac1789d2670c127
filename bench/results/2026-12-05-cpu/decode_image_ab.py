"""decode_image without the patch (Pillow's path for every image) against decode_image with simplejpeg-decode.patch
(libjpeg-turbo straight into NumPy for upright colour JPEGs), on bench/serving.py's own 256 px uploads, interleaved
twice, in one process. It first checks that both return the same pixels.

    python bench/results/2026-12-05-cpu/decode_image_ab.py BEFORE_CHECKOUT AFTER_CHECKOUT
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

HERE = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(HERE / "bench"))
from serving import sample_images  # noqa: E402


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    old = load(Path(sys.argv[1]) / "bento" / "inputs.py", "inputs_before")
    new = load(Path(sys.argv[2]) / "bento" / "inputs.py", "inputs_after")
    images = sample_images(16, 256, "jpeg")
    for data in images:
        before = old.decode_image(data, old.InputLimits()).pixels
        assert np.array_equal(before, new.decode_image(data, new.InputLimits()).pixels)
    figures: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(2):
        for label, module in (("before", old), ("after", new)):
            limits = module.InputLimits()
            started = time.perf_counter()
            for _ in range(60):
                for data in images:
                    module.decode_image(data, limits)
            figures[label].append((time.perf_counter() - started) / (60 * len(images)) * 1e6)
    size = sum(map(len, images)) // len(images)
    for label, values in figures.items():
        print(f"{label:6s} " + ", ".join(f"{value:.1f}" for value in values) + f" µs per {size}-byte 256 px JPEG")
    ratio = min(figures["before"]) / min(figures["after"])
    print(f"after against before: {ratio:.2f}x faster (best of each), same pixels")


if __name__ == "__main__":
    main()
