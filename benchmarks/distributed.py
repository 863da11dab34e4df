r"""Times training under :mod:`torch.distributed` (DDP, gloo on CPU): the
epoch and validation times with 1 and 2 processes (one thread each), and
the communication volume of a step, for MLLMRec and LightGCN.

    python benchmarks/distributed.py [--dataset ../shared/data/amazon-sports]
        [--models mllmrec,lightgcn] [--worlds 1,2] [--epochs 2]

Quick check on a generated dataset:

    python benchmarks/distributed.py --dataset synthetic:users=300,items=200,seed=1

The figures printed per model and world size :math:`W`:

* ``epoch_s``: mean wall seconds of :meth:`~mllmrec_pyg.train.Trainer.train_epoch`
  on rank 0 (every rank is synchronised each step by the all-reduce);
* ``val_s``: one validation evaluation (users sharded by chunks, ranked
  lists all-gathered);
* ``grad_bytes_step``: the bytes DDP all-reduces per step, the sum of
  :obj:`numel * element_size` of the parameters with a gradient (the
  ring all-reduce sends about :math:`2 (W - 1) / W` times that per rank);
  ``grad_MB_epoch`` multiplies it by the steps of an epoch.

What scaling to expect, here and on GPUs: the models propagate over the
WHOLE user-item graph inside every :meth:`loss` call (LightGCN-style), and
that propagation is replicated on every rank; only the per-batch work
(gathering the batch rows, the BPR loss, its backward into the batch rows
and the MLP rows) is divided by :math:`W`.  The speed-up of an epoch is
therefore bounded by the share of the per-batch work (Amdahl): small for
LightGCN (propagation dominates), larger for MLLMRec without user-item
layers (its MLPs run on the batch rows only).  Communication is ALL the
parameters' gradients every step, because the embedding tables get dense
gradients (the propagation touches every row): for LightGCN on Sports
(~35.6k users + 18.4k items, 64-d float32) that is ~14 MB per step, which
on one machine's NVLink is negligible but over gloo/TCP or Ethernet
dominates the step.  MLLMRec (with its default feature-initialised users)
has no embedding tables, only its two MLPs: ~0.9 MB per step whatever the
dataset size.  On GPUs one device already holds these graphs and
the replicated propagation is the bulk of a step, so expect little gain
from more GPUs on Sports-sized data (and a loss over PCIe/Ethernet); DDP
pays off for batch-heavy models, and its use here is running the SAME
training (identical batches and negatives, the single-process result up to
float rounding) on a multi-GPU allocation.
Validation does divide (each rank ranks its chunks of users) apart from the
replicated :meth:`embed` and the gather.

On this 2-core machine with one thread per process, two processes have
twice the cores of one, so a speed-up here is the per-batch share above,
not a DDP gain; a busy machine makes both figures noisy.  Measured on
``synthetic:users=2000,items=1000,seed=1`` with both cores busy with other
jobs (10 steps per epoch): MLLMRec 0.54 s per epoch with 1 process, 0.72 s
with 2; LightGCN 0.084 s and 0.22 s; 920,064 and 768,000 gradient bytes
per step.  On a graph this small the replicated propagation, the gloo
all-reduce and the unused-parameter search outweigh the divided batch
work.  The Sports
dataset is skipped with a message when absent.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any, Dict, List

import torch

SPORTS = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'amazon-sports'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _measure(name: str, data: Any, epochs: int) -> Dict[str, float]:
    from mllmrec_pyg import distributed
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer, seed_everything

    seed_everything(2024)
    model = build_model(name, data)
    trainer = Trainer(model, data, max_epochs=epochs, progress=False)
    times: List[float] = []
    for _ in range(epochs):
        distributed.barrier()
        start = time.perf_counter()
        trainer.train_epoch()
        times.append(time.perf_counter() - start)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters()
                     if p.grad is not None)
    distributed.barrier()
    start = time.perf_counter()
    trainer.evaluator.evaluate(model, splits=('val', ))
    val = time.perf_counter() - start
    return {'epoch_s': statistics.mean(times), 'val_s': val,
            'steps': len(trainer.sampler), 'grad_bytes_step': grad_bytes}


def _worker(rank: int, world: int, port: int, path: str, models: List[str],
            epochs: int, out: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from mllmrec_pyg import distributed

    distributed.init_distributed(timeout=timedelta(minutes=30))
    try:
        datasets = torch.load(path, weights_only=False)
        figures = {name: _measure(name, datasets[name], epochs) for name in models}
        if rank == 0:
            torch.save(figures, out)
    finally:
        distributed.destroy_distributed()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default=str(SPORTS))
    parser.add_argument('--models', default='mllmrec,lightgcn')
    parser.add_argument('--worlds', default='1,2')
    parser.add_argument('--epochs', type=int, default=2)
    args = parser.parse_args()
    if not args.dataset.startswith('synthetic') and not os.path.isdir(args.dataset):
        print(f'skipped: dataset {args.dataset} is absent (Amazon Sports lives in '
              '../shared/data/amazon-sports; pass --dataset synthetic:... for a quick run)')
        return 0
    torch.set_num_threads(1)
    import torch.multiprocessing as mp

    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.experiment import build_config, prepare_experiment

    models = args.models.split(',')
    base = load_dataset(args.dataset)
    datasets = {}
    for name in models:
        data = base.clone()
        prepare_experiment(data, build_config(args.dataset, model=name))
        datasets[name] = data
    print(f'dataset {base.name}: {base["user"].num_nodes} users, {base["item"].num_nodes} '
          f'items; {args.epochs} epochs, batch 2048, one thread per process')
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'data.pt')
        torch.save(datasets, path)
        results = {}
        for world in (int(w) for w in args.worlds.split(',')):
            out = os.path.join(tmp, f'world{world}.pt')
            mp.spawn(_worker, args=(world, _free_port(), path, models, args.epochs, out),
                     nprocs=world, join=True)
            results[world] = torch.load(out, weights_only=False)
    print(f'{"model":10} {"W":>2} {"epoch_s":>8} {"speedup":>8} {"val_s":>7} '
          f'{"steps":>6} {"grad_bytes_step":>16} {"grad_MB_epoch":>14}')
    for name in models:
        first = results[min(results)][name]['epoch_s']
        for world, figures in results.items():
            f = figures[name]
            print(f'{name:10} {world:>2} {f["epoch_s"]:8.3f} {first / f["epoch_s"]:8.2f} '
                  f'{f["val_s"]:7.3f} {f["steps"]:>6} {f["grad_bytes_step"]:>16,} '
                  f'{f["grad_bytes_step"] * f["steps"] / 1e6:14.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
