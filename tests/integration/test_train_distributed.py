"""Two processes started by torchrun (gloo, CPU) train one model together; only rank 0 writes."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.training.checkpoint import list_checkpoints
from tests.integration.train_support import (
    Finished,
    describe,
    digits,
    parse_events,
    stored_models,
    trainer_env,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _torchrun(config: Path, logs: Path, *assignments: str) -> tuple[dict[int, Finished], int, str]:
    """`python -m torch.distributed.run --nproc_per_node=2 -m modelyard.cli train ...`; each rank's own output."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        f"--log-dir={logs}", "--redirects=3",
        "-m", "modelyard.cli", "train", "--config", str(config),
    ]  # fmt: skip
    for assignment in assignments:
        command += ["--set", assignment]
    env = trainer_env(OMP_NUM_THREADS="1")  # two processes on two cores
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    ranks = {}
    for rank in (0, 1):
        stdout = next(logs.rglob(f"attempt_0/{rank}/stdout.log")).read_text()
        stderr = next(logs.rglob(f"attempt_0/{rank}/stderr.log")).read_text()
        ranks[rank] = Finished(completed.returncode, parse_events(stdout), stdout, stderr)
    return ranks, completed.returncode, completed.stderr[-2000:]


def test_two_processes_train_one_model_and_only_rank_0_writes(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dataset = digits(tmp_path_factory.getbasetemp())
    config = write_config(
        tmp_path / "job.yaml", dataset.train, tmp_path, training={"epochs": 2, "batchSize": 32, "maxStepsPerEpoch": 4}
    )
    ranks, returncode, launcher_err = _torchrun(config, tmp_path / "logs")
    assert returncode == 0, describe(ranks[0]) + describe(ranks[1]) + launcher_err

    starts = {rank: ranks[rank].of("start")[0] for rank in (0, 1)}
    for rank, start in starts.items():
        assert start["rank"] == rank
        assert start["worldSize"] == 2
        assert start["imagesPerRank"] == math.ceil(start["trainImages"] / 2)  # the data is split between them
    # DDP averaged the gradients of both: they end with the very same parameters.
    digests = {rank: ranks[rank].of("finished")[0]["parametersDigest"] for rank in (0, 1)}
    assert digests[0] == digests[1]

    # Rank 0 reports, checkpoints and saves the model; rank 1 says nothing of the kind.
    assert [event["epoch"] for event in ranks[0].of("epoch")] == [1, 2]
    assert len(ranks[0].of("model_saved")) == 1
    for event in ("epoch", "step", "model_saved"):
        assert not ranks[1].of(event), f"rank 1 logged {event}"
    checkpoints = tmp_path / "ckpt" / "digits"
    assert [epoch for epoch, _ in list_checkpoints(checkpoints)] == [1, 2]
    assert sorted(path.name for path in checkpoints.iterdir()) == sorted(
        [
            "checkpoint-epoch-0001.pt",
            "checkpoint-epoch-0002.pt",
            "config.yaml",
            "result.json",
            f"best-epoch-{ranks[0].of('model_saved')[0]['metrics']['bestEpoch']:04.0f}.pt",
        ]
    )
    assert len(stored_models(tmp_path / "store")) == 1

    # One more epoch: rank 0 reads the checkpoint and hands it to rank 1, and they go on together.
    more, returncode, launcher_err = _torchrun(config, tmp_path / "logs-more", "training.epochs=3")
    assert returncode == 0, describe(more[0]) + describe(more[1]) + launcher_err
    for rank in (0, 1):
        assert more[rank].of("resumed")[0]["nextEpoch"] == 3
    assert [event["epoch"] for event in more[0].of("epoch")] == [3]
    assert more[0].of("finished")[0]["parametersDigest"] == more[1].of("finished")[0]["parametersDigest"]
