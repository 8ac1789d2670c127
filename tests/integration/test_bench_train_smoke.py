"""The training benchmark (bench/train_throughput.py) end to end on the CPU at a tiny size: every data source and
recipe trains through the real trainer, and the figures it writes (a profile among them) are consistent with each
other. No speed is asserted. The GPU machine's sessions depend on this script working the first time: a device call
is too scarce to find a broken benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.bench import run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_data_source_and_recipe_trains_and_the_ratios_add_up(tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.json"
    run_bench(
        "train_throughput.py", "--device", "cpu", "--backbone", "resnet18", "--image-size", "64", "--steps", "1",
        "--warmup", "1", "--batch-size", "8", "--workers", "1", "--data", "all", "--recipes", "modelyard",
        "--frozen-batch-norm", "--host-decode-shares", "0,0.5", "--profile-steps", "1", "--profile-rows", "4",
        "--json", str(figures_path),
    )  # fmt: skip

    rows = json.loads(figures_path.read_text())
    runs = [("synthetic", None), ("pipeline", None), ("gpu-pipeline", 0.0), ("gpu-pipeline", 0.5)]
    assert [(row["data"], row["host_decode_share"], row["recipe"].endswith("frozen BatchNorm)")) for row in rows] == [
        (data, share, frozen) for data, share in runs for frozen in (False, True)
    ]
    rate = {(row["data"], row["host_decode_share"], row["recipe"]): row["images_per_second"] for row in rows}
    for row in rows:
        assert row["images_per_second"] > 0
        assert (row["steps"], row["batch_size"], row["world_size"]) == (1, 8, 1)
        assert 0 <= row["data_wait_fraction"] < 1
        assert row["peak_memory_bytes"] > 2**20
        # Each recipe against the one without frozen norms on the same data, and each pipeline against synthetic.
        trained_norms = row["recipe"].replace(", frozen BatchNorm", "")
        same_data = (row["data"], row["host_decode_share"], trained_norms)
        assert math.isclose(row["ratio_to_baseline"], row["images_per_second"] / rate[same_data])
        # The profile of one more step: a header, the 4 costliest operations and their total, which they do not exceed.
        header, *operations, total = row["profile"].splitlines()
        assert header.split() == ["operation", "ms/step", "share", "calls/step"]
        assert len(operations) == 4
        spent = [float(line[60:].split()[0]) for line in operations]
        assert spent == sorted(spent, reverse=True)
        assert total.split()[0] == "all"
        assert 0 < sum(spent) <= float(total.split()[1]) + 0.01
        if row["data"] == "synthetic":
            assert row["share_of_synthetic"] is None
        else:
            synthetic = rate[("synthetic", None, row["recipe"])]
            assert math.isclose(row["share_of_synthetic"], row["images_per_second"] / synthetic)
