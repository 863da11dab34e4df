"""Small helpers for running under :obj:`torchrun` (:mod:`torch.distributed`).

Every helper works without a process group: :meth:`is_distributed` is then
:obj:`False`, :meth:`rank` is :obj:`0`, :meth:`world_size` is :obj:`1` and
:meth:`barrier` returns at once, so library code calls them unconditionally.
"""
import contextlib
import os
from datetime import timedelta
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

#: How long a collective waits for the other ranks before it raises (a dead
#: rank then ends the job with an error instead of a hang).
DEFAULT_TIMEOUT = timedelta(minutes=10)


def is_distributed() -> bool:
    r"""Returns :obj:`True` when a process group with more than one rank is
    initialized."""
    return (dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def rank() -> int:
    r"""The global rank of this process (:obj:`0` without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def world_size() -> int:
    r"""The number of processes (:obj:`1` without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    r"""Returns :obj:`True` on rank :obj:`0`: the only rank that writes
    files."""
    return rank() == 0


def barrier() -> None:
    r"""Waits for all ranks (a no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def launched_by_torchrun() -> bool:
    r"""Returns :obj:`True` when the environment (:obj:`WORLD_SIZE`,
    :obj:`RANK`, :obj:`LOCAL_RANK`, as set by :obj:`torchrun`) asks for more
    than one process."""
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def launch_rank() -> int:
    r"""The global rank :obj:`torchrun` gave this process (:obj:`RANK`,
    :obj:`0` when unset), known before the process group exists."""
    return int(os.environ.get('RANK', '0')) if launched_by_torchrun() else 0


def local_rank() -> int:
    r"""The rank of this process on its machine (:obj:`LOCAL_RANK`,
    :obj:`0` when unset)."""
    return int(os.environ.get('LOCAL_RANK', '0'))


def init_distributed(
    device: Optional[str] = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> bool:
    r"""Initializes the default process group when launched by
    :obj:`torchrun` with :obj:`WORLD_SIZE > 1`; does nothing otherwise or
    when a group already exists.

    Args:
        device (str, optional): The training device; backend :obj:`"nccl"`
            for CUDA (and :obj:`torch.cuda.set_device(LOCAL_RANK)`),
            :obj:`"gloo"` otherwise. (default: :obj:`None`, i.e. CPU)
        timeout (datetime.timedelta, optional): How long a collective waits
            before it raises. (default: :obj:`DEFAULT_TIMEOUT`, 10 minutes)

    Returns:
        :obj:`True` when this call created the process group.
    """
    if not launched_by_torchrun() or not dist.is_available():
        return False
    if dist.is_initialized():
        return False
    cuda = device is not None and torch.device(device).type == 'cuda'
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend='nccl' if cuda else 'gloo',
                            timeout=timeout)
    return True


def destroy_distributed() -> None:
    r"""Destroys the default process group if one is initialized."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for_rank(device: str) -> str:
    r"""Maps a CUDA device to this rank's GPU (:obj:`cuda:LOCAL_RANK`) under
    a process group; other devices are returned unchanged.

    Args:
        device (str): The requested device, e.g. :obj:`"cpu"` or
            :obj:`"cuda"`.
    """
    if is_distributed() and torch.device(device).type == 'cuda':
        return f'cuda:{local_rank()}'
    return device


def shard_bounds(num_items: int, rank_: Optional[int] = None,
                 world_size_: Optional[int] = None) -> Tuple[int, int]:
    r"""The contiguous slice :obj:`[start, end)` of :obj:`num_items` that
    rank :obj:`rank_` owns: the first :obj:`num_items % world_size_` ranks
    take one extra item, so shard sizes differ by at most one.

    Args:
        num_items (int): The number of items to split.
        rank_ (int, optional): The rank. (default: :meth:`rank`)
        world_size_ (int, optional): The number of ranks.
            (default: :meth:`world_size`)
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world_size_ is None else world_size_
    base, extra = divmod(num_items, w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    r"""Runs the code inside on rank :obj:`0` first and on the other ranks
    after it, so that caches rank :obj:`0` writes (processed datasets,
    encoded features) are read, not rewritten concurrently, by the others.
    A no-op without a process group."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


#: :obj:`(global batch size, this rank's rows)` while the trainer runs a
#: shard of a global batch (:meth:`global_batch`), else :obj:`None`.
_GLOBAL_BATCH: Optional[Tuple[int, int]] = None


@contextlib.contextmanager
def global_batch(size: int, rows: int) -> Iterator[None]:
    r"""Marks the code inside as computing this rank's :obj:`rows` rows of a
    global training batch of :obj:`size` rows (read with
    :meth:`current_global_batch`), so that a loss term that is not a mean
    over rows can make itself shard-aware.

    Args:
        size (int): The rows of the global batch.
        rows (int): This rank's rows (:obj:`0`: an empty shard).
    """
    global _GLOBAL_BATCH
    previous, _GLOBAL_BATCH = _GLOBAL_BATCH, (size, rows)
    try:
        yield
    finally:
        _GLOBAL_BATCH = previous


def current_global_batch() -> Optional[Tuple[int, int]]:
    r"""The :obj:`(size, rows)` of the enclosing :meth:`global_batch`, or
    :obj:`None` outside one (single-process training)."""
    return _GLOBAL_BATCH


def collective_device(group: Optional[Any] = None) -> torch.device:
    r"""The device collectives of :obj:`group` run on: CUDA for NCCL, the
    CPU otherwise (gloo has no :obj:`all_gather` of CUDA tensors)."""
    if dist.get_backend(group) == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def gather_rows(tensors: Sequence[torch.Tensor],
                group: Optional[Any] = None) -> List[torch.Tensor]:
    r"""Concatenates, for each of :obj:`tensors` (equal length along
    dimension :obj:`0` on this rank, lengths free to differ between ranks),
    the tensors of all ranks of :obj:`group` in rank order; every rank gets
    the result, on the device of its input.

    The lengths are gathered first, each tensor is padded to the longest
    and gathered with :func:`torch.distributed.all_gather`, and the padding
    is cut off: the result is exact (no conversion).

    Args:
        tensors (Sequence[torch.Tensor]): This rank's shards.
        group (ProcessGroup, optional): The group. (default: :obj:`None`,
            the default group)
    """
    world = dist.get_world_size(group)
    device = collective_device(group)
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
                              zip(parts, lengths, strict=True)]).to(tensor.device))
    return out


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    r"""Concatenates :obj:`tensor` from every rank of the default group in
    rank order along dimension :obj:`0` (shards may differ in length, see
    :func:`gather_rows`); returns :obj:`tensor` itself without a process
    group.

    Args:
        tensor (torch.Tensor): This rank's shard.
    """
    if not is_distributed():
        return tensor
    return gather_rows([tensor])[0]


def broadcast_object(obj: object, src: int = 0) -> object:
    r"""Returns rank :obj:`src`'s :obj:`obj` on every rank (:obj:`obj`
    itself without a process group).

    Args:
        obj (object): A picklable object.
        src (int, optional): The sending rank. (default: :obj:`0`)
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
