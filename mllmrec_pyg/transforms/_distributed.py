r"""Process-group collectives of the sharded item graph.

The graph transforms take an explicit :obj:`group` (a
:class:`torch.distributed.ProcessGroup`, e.g.
:obj:`torch.distributed.group.WORLD`), so these helpers take one too;
the variable-length gather is :func:`mllmrec_pyg.distributed.gather_rows`.
Collectives run on the device the backend needs (CUDA for NCCL, CPU
otherwise: gloo has no :obj:`all_gather` of CUDA tensors) and their results
go back to the device of the input.
"""
from __future__ import annotations

from typing import Any, Iterator, Tuple

import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup

from mllmrec_pyg.distributed import collective_device as _device
from mllmrec_pyg.distributed import gather_rows, shard_bounds

__all__ = ['check_group', 'group_shard', 'gather_rows', 'broadcast_',
           'grid_blocks', 'shard_bounds']


def check_group(group: Any, owner: str) -> None:
    r"""Raises a :class:`ValueError` naming :obj:`owner` when :obj:`group`
    is given but cannot shard: :mod:`torch.distributed` not initialised, or
    not a process group."""
    if group is None:
        return
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(f"{owner}: 'group' is given but torch.distributed is "
                         f"not initialised; call "
                         f"torch.distributed.init_process_group() first, or "
                         f"pass group=None to build on one process")
    if not isinstance(group, dist.ProcessGroup):
        raise ValueError(f"{owner}: 'group' must be a "
                         f"torch.distributed.ProcessGroup, e.g. "
                         f"torch.distributed.group.WORLD (got {group!r})")


def group_shard(group: ProcessGroup) -> Tuple[int, int]:
    r"""Returns :obj:`(rank, world_size)` of this process in :obj:`group`."""
    return dist.get_rank(group), dist.get_world_size(group)


def broadcast_(tensor: Tensor, group: ProcessGroup) -> Tensor:
    r"""Overwrites :obj:`tensor` on every rank of :obj:`group` with the one
    of the group's rank :obj:`0` (in place; also returned)."""
    device = _device(group)
    buffer = tensor.to(device).contiguous()
    dist.broadcast(buffer, src=dist.get_global_rank(group, 0), group=group)
    if buffer is not tensor:
        tensor.copy_(buffer)
    return tensor


def grid_blocks(start: int, end: int, step: int,
                total: int) -> Iterator[Tuple[int, int]]:
    r"""The blocks :obj:`[first, first + step)` (cut at :obj:`total`, the
    number of rows) of the grid :obj:`0, step, 2 step, ...` that intersect
    :obj:`[start, end)`.

    A shard computes these WHOLE blocks and keeps its rows of them, so every
    matrix product it runs has the shape and the inputs of one run by the
    single-process search: its rows are bitwise those of the single-process
    result whatever the BLAS does with other shapes.  At most the two
    blocks at the shard's ends are partly redundant.
    """
    if start >= end:
        return
    first = (start // step) * step
    while first < end:
        yield first, min(first + step, total)
        first += step
