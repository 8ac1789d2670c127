"""Process layout: a single CPU process without torchrun; torchrun for several GPUs or pods, with NVLS off."""

from __future__ import annotations

import sys

import pytest
import torch

from modelyard.api.training_job import ResourcesSpec
from modelyard.training.distributed import (
    child_environment,
    choose_device,
    needs_launcher,
    setup,
    torchrun_command,
)
from modelyard.training.errors import ConfigError

pytestmark = pytest.mark.unit


def test_without_torchrun_it_is_one_cpu_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = setup(ResourcesSpec(gpus_per_node=0))
    assert (context.rank, context.world_size, context.is_main, context.enabled) == (0, 1, True, False)
    assert context.device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU that is not there")
def test_asking_for_a_gpu_without_one_is_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=r"gpusPerNode is 1 but no CUDA device is visible; set resources\.gpusPerNode=0"
    ):
        choose_device(ResourcesSpec(gpus_per_node=1), 0)


def test_one_gpu_and_one_pod_need_no_launcher_but_more_do() -> None:
    assert not needs_launcher(ResourcesSpec(gpus_per_node=1), {})
    assert needs_launcher(ResourcesSpec(gpus_per_node=4), {})
    assert needs_launcher(ResourcesSpec(gpus_per_node=1, num_nodes=2), {})
    assert not needs_launcher(ResourcesSpec(gpus_per_node=4), {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0"})


def test_one_pod_with_several_gpus_runs_standalone() -> None:
    command = torchrun_command(ResourcesSpec(gpus_per_node=4), ["train", "--config", "/etc/spec.yaml"], {})
    assert command == [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4", "--standalone",
        "-m", "modelyard.cli", "train", "--config", "/etc/spec.yaml",
    ]  # fmt: skip


def test_several_pods_meet_at_the_first_one() -> None:
    environ = {"NODE_RANK": "2", "MASTER_ADDR": "job-0.job", "MASTER_PORT": "29400"}
    command = torchrun_command(ResourcesSpec(gpus_per_node=8, num_nodes=3), ["train"], environ)
    assert command[3:8] == [
        "--nproc_per_node=8", "--nnodes=3", "--node_rank=2", "--master_addr=job-0.job", "--master_port=29400",
    ]  # fmt: skip
    indexed = torchrun_command(
        ResourcesSpec(num_nodes=2), ["train"], {"JOB_COMPLETION_INDEX": "1", "MASTER_ADDR": "job-0.job"}
    )
    assert "--node_rank=1" in indexed
    assert "--master_port=29500" in indexed
    with pytest.raises(ConfigError, match="MASTER_ADDR and NODE_RANK"):
        torchrun_command(ResourcesSpec(num_nodes=2), ["train"], {})


def test_workers_get_nvlink_multicast_turned_off() -> None:
    assert child_environment({"PATH": "/bin", "NCCL_NVLS_ENABLE": "1"}) == {
        "PATH": "/bin",
        "NCCL_NVLS_ENABLE": "0",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1",
    }
