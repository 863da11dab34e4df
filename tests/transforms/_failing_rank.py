r"""The worker of :func:`test_sharded_graph.test_failing_rank_fails_fast`,
in a module of its own that imports only :mod:`torch` (a spawned rank
imports the worker's module; the package takes seconds to import)."""
import datetime

import torch.distributed as dist


def failing_worker(rank: int, init_file: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    if rank == 1:
        raise RuntimeError('rank 1 failed on purpose')
    # Rank 0 waits in a collective that rank 1 never joins.
    dist.barrier()
