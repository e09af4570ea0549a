"""Training on several GPUs (or several CPU processes): ``torchrun``, DistributedDataParallel, sharded batches.

Data parallelism: every process holds a full copy of the model and trains on its own slice of each
global batch; after ``backward`` the gradients are averaged across processes, so every copy takes the
same optimizer step. With per-process *mean* losses over equal slices, the averaged gradient is exactly
the gradient of the mean loss over the global batch: N processes with batch B/N each train like one
process with batch B (up to the order of float sums). PyTorch's ``DistributedDataParallel`` (Li et al.
2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training") does the averaging in
buckets, overlapped with the backward pass.

Launch on one machine with 4 GPUs (the training script needs no change: the Trainer finds the process
group that :func:`init_distributed` starts from the variables ``torchrun`` sets)::

    torchrun --nproc_per_node=4 -m course_lib.codec.train --scale full

On two machines, run on each (``--node_rank`` 0 on the one whose address is given)::

    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 --master_addr=10.0.0.1 --master_port=29500 \\
        -m course_lib.codec.train --scale full

What the Trainer does when a process group is running (see :class:`course_lib.train.Trainer`):

- wraps the model in DDP (NCCL on CUDA, one GPU per process, ``cuda:LOCAL_RANK``; gloo on CPU);
  the loss function receives the wrapped model, so **its forward pass must go through
  ``model(...)``**: a call to another method (``model.encode``) would skip the gradient averaging;
- gives each process its contiguous slice of every batch (a batch function, or a DataLoader without a
  ``DistributedSampler``); with a ``DistributedSampler`` each process already reads its own part, and
  the sampler's epoch is set at every epoch so the shuffle changes;
- averages the logged losses over processes, writes checkpoints from rank 0 only, and shows one
  progress bar; :func:`course_lib.train.save_weights` also writes from rank 0 only.

Notebooks: none (a notebook runs in one process); README.md, "Training on several GPUs".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from course_lib.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes, its GPU index on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_context() -> DistributedContext:
    """The running process group's context; a single process when none is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Start the process group that ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

    Without those variables (a plain ``python`` run, a notebook) nothing happens and a single-process
    context is returned, so a training script can call this unconditionally.

    Args:
        backend: ``"nccl"`` (default when CUDA is available: one GPU per process, ``cuda:LOCAL_RANK``)
            or ``"gloo"`` (default otherwise: CPU processes).
    """
    if dist.is_available() and dist.is_initialized():
        return current_context()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed: run a single process.")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                "use --nproc_per_node at most the number of GPUs."
            )
        torch.cuda.set_device(local_rank)  # torch.device("cuda") now means this process's GPU
    dist.init_process_group(backend)
    return current_context()


class DistributedModel(DistributedDataParallel):
    """DDP that also answers the wrapped model's attributes (``model.config``, ``model.hop``, ...).

    Only calls of the wrapper itself (``model(x)``) average gradients across processes; methods and
    submodules reached through here run the plain module.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_model(model: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """``model`` in a :class:`DistributedModel` when several processes train, else unchanged.

    DDP's constructor broadcasts rank 0's parameters and buffers, so every copy starts identical.
    """
    if not context.enabled:
        return model
    parameter = next(model.parameters(), None)
    on_gpu = parameter is not None and parameter.device.type == "cuda"
    return DistributedModel(model, device_ids=[parameter.device.index] if on_gpu else None)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP (or ``torch.compile``) wrapper; ``model`` itself otherwise."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def shard_batch(batch: Any, context: DistributedContext) -> Any:
    """This process's contiguous slice of dim 0 of every tensor in ``batch`` (nested dicts/lists/tuples).

    Raises:
        ConfigError: when a batch dimension does not divide by the number of processes.
    """
    if not context.enabled:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 0:
            return batch
        if batch.shape[0] % context.world_size:
            raise ConfigError(
                f"A batch of {batch.shape[0]} does not split evenly over {context.world_size} processes: "
                f"use a global batch size that is a multiple of {context.world_size}."
            )
        size = batch.shape[0] // context.world_size
        return batch[context.rank * size : (context.rank + 1) * size]
    if isinstance(batch, Mapping):
        return {key: shard_batch(value, context) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(shard_batch(value, context) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(shard_batch(value, context) for value in batch)
    return batch


def distributed_loader(
    dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0, **loader_options: Any
) -> DataLoader:
    """A DataLoader in which each process reads its own ``1 / world_size`` of ``dataset`` each epoch.

    Args:
        batch_size: per process (the global batch is ``batch_size × world_size``).
        seed: the shuffle's seed; the Trainer calls ``sampler.set_epoch`` so each epoch differs.
        loader_options: passed to ``DataLoader`` (``num_workers``, ``pin_memory``, ``collate_fn``, ...).
    """
    context = current_context()
    sampler = DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=shuffle, seed=seed, drop_last=True
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **loader_options)


def uses_distributed_sampler(data: Any) -> bool:
    return isinstance(getattr(data, "sampler", None), DistributedSampler)


def average_over_processes(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The mean of ``values`` over all processes (a collective: every process must call it)."""
    if not context.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / context.world_size


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward hands each process the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(values) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, values.contiguous())
        ctx.rows = values.shape[0]
        return torch.cat(parts)  # (N · B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss may depend on every row
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(values: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` rows of every process, concatenated in rank order: ``(N · B, ...)``, gradients flowing back.

    For losses that compare examples with each other, such as a contrastive loss whose negatives are
    the other examples of the batch (CLIP's and MuLan's in-batch negatives): gathered, each process sees
    the whole global batch, as one process would (Radford et al. 2021 gather the embeddings the same
    way). Outside a process group it returns ``values`` unchanged. Every process must call it, with
    the same number of rows (the Trainer's slices are equal).
    """
    if not current_context().enabled:
        return values
    return _GatherWithGrad.apply(values)


def average_gradients(module: torch.nn.Module) -> None:
    """Average ``module``'s gradients over processes, for a module trained outside the Trainer's DDP.

    E.g. a GAN's discriminator stepped inside the generator's loss function: with the same
    initial weights (same seed) and averaged gradients its copies stay identical, like DDP's.
    A no-op outside a process group. Every process must call it.
    """
    if not current_context().enabled:
        return
    world = dist.get_world_size()
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= world


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers of ``module`` to every process (DDP does this for the model).

    A no-op outside a process group. Every process must call it.
    """
    if not current_context().enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=0)


def sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The sum of ``values`` over all processes, as a new tensor (a collective: every process must call it).

    E.g. a codebook's usage counts, so that every copy sees how often each code served the global batch.
    Outside a process group it returns ``values`` unchanged.
    """
    if not current_context().enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_from_main(values: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``values`` on every process, written into ``values`` and returned (a collective).

    For a random draw or a computation that must come out the same on every copy (a k-means
    initialisation, the rows drawn for dead-code restarts): rank 0's result wins. A no-op outside a
    process group.
    """
    if current_context().enabled:
        dist.broadcast(values, src=0)
    return values
