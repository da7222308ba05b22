"""Beyond one machine: data-parallel training on ``torch.distributed`` and deterministic shards of batch jobs.

Training runs as N processes started by ``torchrun`` (or ``kgemb train --nproc N``, which starts ``torchrun``
itself): gloo on CPU, NCCL on CUDA. Every rank holds the whole model (entity rows are *replicated*); each
global batch is split across the ranks by rows, every rank scores its rows against the same candidates, and the
gradients are summed with ``all_reduce`` — sparse embedding gradients as the union of the rows the ranks touched,
so traffic grows with the batch, not with the graph. With the same seed on every rank, the ranks stay identical
and the result matches one process within float rounding. Rank 0 computes the text features (and sends them to the
others), evaluates, writes checkpoints and the model folder. There is no cluster layer of kgemb's own.

Batch jobs (``kgemb enrich --shard I/N``, ``kgemb neo4j push --shard I/N``) split their subjects, sorted by key,
into N contiguous blocks; :func:`shard_block` is the one rule both use.
"""

from __future__ import annotations

import atexit
import os
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta

import torch
import torch.distributed as dist

from kgemb.errors import ConfigError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


# ---------------------------------------------------------------------------------------------------- shards
def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (0 <= I < N, e.g. ``$SLURM_ARRAY_TASK_ID/4``) as ``(I, N)``; None for None."""
    if text is None:
        return None
    match = _SHARD.match(str(text))
    if not match:
        raise ConfigError(f"--shard {text!r} must look like I/N, e.g. 0/4 (shards are numbered 0 to N-1)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: I must lie in 0..N-1 and N be at least 1, e.g. 0/4 ... 3/4")
    return index, count


def shard_block(n: int, shard: tuple[int, int] | None, unit: int = 1) -> tuple[int, int]:
    """The positions ``[start, stop)`` of ``shard = (I, N)`` among ``n`` sorted items: N contiguous blocks of
    whole ``unit``-sized groups (a job's batches, so every batch is the one an unsharded run computes)."""
    if shard is None:
        return 0, n
    index, count = shard
    groups = -(-n // unit)
    return min(n, groups * index // count * unit), min(n, groups * (index + 1) // count * unit)


# ---------------------------------------------------------------------------------------------------- process group
def requested_world() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``; 1 outside ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init(device: str | None) -> torch.device | None:
    """Join the process group ``torchrun`` describes (env://), if any and not joined yet; the device this rank
    trains on (``cuda:LOCAL_RANK`` with NCCL when CUDA is used), or None outside ``torchrun``."""
    if requested_world() <= 1:
        return None
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} asked for, but torch sees no CUDA GPU here; use device='cpu'")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    here = torch.device("cuda", local) if cuda else torch.device("cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(here)
        # rank 0 encodes the texts and evaluates while the others wait in a collective: allow hours, not minutes
        hours = float(os.environ.get("KGEMB_DIST_TIMEOUT_HOURS", "12"))
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(hours=hours))
        # a rank that exits with the group alive can abort in the interpreter's teardown (gloo's worker threads
        # still hold tensors: "terminate called without an active exception"); leave it while Python is whole
        atexit.register(shutdown)
    return here


def shutdown() -> None:
    """Leave the process group :func:`init` joined (each rank on its own; no collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """Wait until every rank got here (rank 0 after writing its results), then leave the group with them."""
    if active():
        dist.barrier()
    shutdown()


def active() -> bool:
    """Whether this process trains as one of several ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that evaluates, checkpoints and writes."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _comm_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def broadcast_tensors(
    tensors: Sequence[torch.Tensor] | None, dtypes: Sequence[torch.dtype]
) -> list[torch.Tensor]:
    """Rank 0's ``tensors`` on every rank (others pass None): shapes first, then the data; no pickling."""
    if not active():
        assert tensors is not None
        return list(tensors)
    device = _comm_device()
    ndims = 4
    shapes = torch.zeros(len(dtypes), ndims, dtype=torch.int64, device=device)
    if tensors is not None:
        for i, t in enumerate(tensors):
            shapes[i, : t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
            shapes[i, t.dim() :] = -1
    dist.broadcast(shapes, 0)
    out = []
    for i, dtype in enumerate(dtypes):
        shape = [int(x) for x in shapes[i].tolist() if x >= 0]
        t = tensors[i].to(device) if tensors is not None else torch.empty(shape, dtype=dtype, device=device)
        dist.broadcast(t, 0)
        out.append(t.cpu())
    return out


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank."""
    if not active():
        return value
    t = torch.tensor([1 if value else 0], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, 0)
    return bool(t.item())


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers rank 0's (a safety net: the same seed builds the same model)."""
    if not active():
        return
    device = _comm_device()
    for t in [*module.parameters(), *module.buffers()]:
        data = torch.view_as_real(t.data) if torch.is_complex(t.data) else t.data
        buf = data.to(device)
        dist.broadcast(buf, 0)
        data.copy_(buf)


# ---------------------------------------------------------------------------------------------------- gradients
def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in place. Dense gradients travel flattened in one buffer;
    a sparse gradient (embedding rows a batch looked up) as the union of the ranks' rows, so its cost grows with
    the batch, not with the table."""
    if not active():
        return
    dense: list[torch.Tensor] = []
    for p in params:
        if p.grad is None:
            if p.requires_grad:  # another rank may hold a gradient for it: take part with zeros
                p.grad = torch.zeros_like(p)
            else:
                continue
        if p.grad.is_sparse:
            p.grad = _all_reduce_sparse(p.grad)
        else:
            dense.append(p.grad)
    if not dense:
        return
    real = [torch.view_as_real(g) if torch.is_complex(g) else g for g in dense]
    flat = torch.cat([g.reshape(-1) for g in real])
    dist.all_reduce(flat)
    start = 0
    for g in real:
        g.copy_(flat[start : start + g.numel()].view_as(g))
        start += g.numel()


def _all_reduce_sparse(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.coalesce()
    rows, values = grad.indices()[0], grad.values()
    count = torch.tensor([len(rows)], dtype=torch.int64, device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    longest = int(max(int(c.item()) for c in counts))
    padded = torch.full((longest,), -1, dtype=torch.int64, device=rows.device)
    padded[: len(rows)] = rows
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    union = torch.unique(torch.cat(gathered))
    union = union[union >= 0]
    real = torch.view_as_real(values) if torch.is_complex(values) else values
    summed = torch.zeros((len(union), *real.shape[1:]), dtype=real.dtype, device=real.device)
    summed[torch.searchsorted(union, rows)] = real
    dist.all_reduce(summed)
    if torch.is_complex(values):
        summed = torch.view_as_complex(summed)
    # union is sorted and unique: the tensor is coalesced as built
    return torch.sparse_coo_tensor(
        union.unsqueeze(0), summed, grad.shape, check_invariants=False, is_coalesced=True
    )


def all_reduce_sum(value: float, device: torch.device | None = None) -> float:
    """The sum of a number over the ranks."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return float(t.item())
