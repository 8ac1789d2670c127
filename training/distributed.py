"""One process per GPU (or a single CPU process): torchrun's env:// rendezvous, DDP, and who may write.

The same code runs single-process on a CPU: without torchrun's variables nothing is initialised. gloo on the CPU,
nccl on GPUs. Only rank 0 writes checkpoints, the model store, the status and the metrics endpoint.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from modelyard.api.training_job import ResourcesSpec
from modelyard.training.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return all(name in env for name in TORCHRUN_VARIABLES)


def choose_device(resources: ResourcesSpec, local_rank: int) -> torch.device:
    """resources.gpusPerNode: 0 trains on the CPU; otherwise this process's GPU, which must be there."""
    if resources.gpus_per_node == 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"resources.gpusPerNode is {resources.gpus_per_node} but no CUDA device is visible; "
            "set resources.gpusPerNode=0 to train on the CPU"
        )
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} are visible")
    return torch.device("cuda", local_rank)


def setup(resources: ResourcesSpec) -> Distributed:
    """Join the process group when started by torchrun; a single process otherwise."""
    if not under_torchrun():
        return Distributed(0, 1, 0, choose_device(resources, 0))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = choose_device(resources, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Distributed(rank, world_size, local_rank, device)


def wrap_model(model: torch.nn.Module, context: Distributed) -> torch.nn.Module:
    """DistributedDataParallel when several processes train, the model itself otherwise.

    Gradients are views into the all-reduce buckets (no copy per step, less memory)."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)


def teardown(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: Distributed) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_max(values: torch.Tensor, context: Distributed) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def barrier(context: Distributed) -> None:
    if context.enabled:
        dist.barrier()


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of worker processes. NVLink multicast stays off in NCCL, PyTorch's symmetric memory and
    NVSHMEM: on shared or partitioned hosts its set-up can hang or take the host's GPUs down, and DDP's all-reduce
    does not need it."""
    env = dict(os.environ if environ is None else environ)
    env.update(MULTICAST_OFF)
    return env


def needs_launcher(resources: ResourcesSpec, environ: Mapping[str, str] | None = None) -> bool:
    """A pod with several GPUs, or several pods, needs one process per GPU; torchrun starts them."""
    return not under_torchrun(environ) and (resources.gpus_per_node > 1 or resources.num_nodes > 1)


def torchrun_command(resources: ResourcesSpec, arguments: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """`python -m torch.distributed.run ... -m modelyard.cli <arguments>` for this pod.

    Several pods (an Indexed Job) meet at MASTER_ADDR:MASTER_PORT (the first pod, through the headless Service);
    the pod's rank is NODE_RANK, or JOB_COMPLETION_INDEX, which Kubernetes sets in Indexed Jobs."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={max(resources.gpus_per_node, 1)}"]
    if resources.num_nodes > 1:
        node_rank = environ.get("NODE_RANK") or environ.get("JOB_COMPLETION_INDEX")
        master_addr = environ.get("MASTER_ADDR")
        if node_rank is None or not master_addr:
            raise ConfigError(
                f"resources.numNodes is {resources.num_nodes}: MASTER_ADDR and NODE_RANK (or JOB_COMPLETION_INDEX) "
                "must be set so that the pods can meet"
            )
        command += [
            f"--nnodes={resources.num_nodes}",
            f"--node_rank={node_rank}",
            f"--master_addr={master_addr}",
            f"--master_port={environ.get('MASTER_PORT', '29500')}",
        ]
    else:
        command += ["--standalone"]
    return [*command, "-m", "modelyard.cli", *arguments]
