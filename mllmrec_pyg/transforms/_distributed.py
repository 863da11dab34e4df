r"""Process-group collectives of the sharded item graph.

The graph transforms take an explicit :obj:`group` (a
:class:`torch.distributed.ProcessGroup`, e.g.
:obj:`torch.distributed.group.WORLD`), so these helpers take one too;
:func:`mllmrec_pyg.distributed.all_gather_cat` only knows the default group.
Collectives run on the device the backend needs (CUDA for NCCL, CPU
otherwise: gloo has no :obj:`all_gather` of CUDA tensors) and their results
go back to the device of the input.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup

from mllmrec_pyg.distributed import shard_bounds

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


def _device(group: ProcessGroup) -> torch.device:
    if dist.get_backend(group) == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def gather_rows(tensors: Sequence[Tensor], group: ProcessGroup) -> List[Tensor]:
    r"""Concatenates, for each of :obj:`tensors` (equal length along
    dimension :obj:`0` on this rank, lengths free to differ between ranks),
    the tensors of all ranks of :obj:`group` in rank order.

    The lengths are gathered first, each tensor is padded to the longest
    and gathered with :func:`torch.distributed.all_gather`, and the padding
    is cut off: the result is exact (no conversion) and every rank gets it.
    """
    world = dist.get_world_size(group)
    device = _device(group)
    length = torch.tensor([tensors[0].size(0) if tensors else 0],
                          dtype=torch.long, device=device)
    lengths_t = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths_t, length, group=group)
    lengths = [int(t) for t in lengths_t]
    longest = max(lengths)
    out = []
    for tensor in tensors:
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype,
                             device=device)
        padded[:tensor.size(0)] = tensor
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded, group=group)
        del padded
        out.append(torch.cat([part[:n] for part, n in
                              zip(parts, lengths, strict=True)]).to(
                                  tensor.device))
    return out


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
