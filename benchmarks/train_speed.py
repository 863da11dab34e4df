r"""Times the training harness on a real dataset: one training epoch
(uniform negative sampling + BPR steps, batch 2048) and one full evaluation
(every user ranked against every item, training items excluded), for each
model, plus the input preparation of MLLMRec (MiniLM item encoding through
the content-keyed cache, the refined item graph) and the whole run's peak
resident memory.

Wall and CPU seconds (all threads) are printed: on a shared machine the
CPU seconds are the steadier figure.

The issue's targets on Sports (reference implementation on this machine:
51-57 s per MLLMRec epoch, 14-16 s per full evaluation, 17 GB peak RSS):
MLLMRec epoch <= 11 s, full evaluation <= 5 s, peak RSS <= 1.5 GB.

    python benchmarks/train_speed.py [--dataset ../shared/data/amazon-sports]
        [--models mllmrec,lightgcn,bpr] [--epochs 3] [--threads 2]

MLLMRec's users are the training-only stand-in of ``mllmrec train`` (mean of
the user's training items' MiniLM embeddings) until the LLM stage exists.
"""
from __future__ import annotations

import argparse
import pathlib
import resource
import statistics
import time

import torch

from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.experiment import build_config, prepare_experiment
from mllmrec_pyg.metrics import Evaluator
from mllmrec_pyg.nn.models import build_model
from mllmrec_pyg.train import Trainer, seed_everything

SPORTS = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'amazon-sports'


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default=str(SPORTS))
    parser.add_argument('--models', default='mllmrec,lightgcn,bpr')
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--eval-repeat', type=int, default=3)
    parser.add_argument('--eval-batch-size', type=int, default=1024)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    base = load_dataset(args.dataset)
    print(f'dataset {base.name}: {base["user"].num_nodes} users, {base["item"].num_nodes} '
          f'items; loaded in {time.perf_counter() - start:.1f} s; peak RSS '
          f'{_peak_rss_mb():.0f} MB')

    for name in args.models.split(','):
        seed_everything(2024)
        start = time.perf_counter()
        data = base
        info = prepare_experiment(data, build_config(args.dataset, model=name))
        prep = time.perf_counter() - start
        model = build_model(name, data)
        trainer = Trainer(model, data, max_epochs=args.epochs, progress=False,
                          eval_batch_size=args.eval_batch_size)
        epoch_times, epoch_cpu = [], []
        for _ in range(args.epochs):
            t, c = time.perf_counter(), time.process_time()
            trainer.train_epoch()
            epoch_times.append(time.perf_counter() - t)
            epoch_cpu.append(time.process_time() - c)
        evaluator: Evaluator = trainer.evaluator
        valid_times, valid_cpu, both_times = [], [], []
        for _ in range(args.eval_repeat):
            t, c = time.perf_counter(), time.process_time()
            out = evaluator.evaluate(model, splits=('val', ))
            valid_times.append(time.perf_counter() - t)
            valid_cpu.append(time.process_time() - c)
            t = time.perf_counter()
            out = evaluator.evaluate(model, splits=('val', 'test'))
            both_times.append(time.perf_counter() - t)
        print(f'{name:>9}: inputs {prep:6.1f} s {info or ""}')
        print(f'{"":>9}  epoch (s) {", ".join(f"{t:.2f}" for t in epoch_times)} | median '
              f'{statistics.median(epoch_times):.2f} wall, '
              f'{statistics.median(epoch_cpu):.2f} CPU (all threads); '
              f'{len(trainer.sampler)} batches of {trainer.batch_size}')
        print(f'{"":>9}  full evaluation (s): valid only median '
              f'{statistics.median(valid_times):.2f} wall, {statistics.median(valid_cpu):.2f} CPU '
              f'({out["val"].users.numel()} users), '
              f'valid+test (one shared ranking) median {statistics.median(both_times):.2f}; '
              f'valid recall@20 after {args.epochs} epochs {out["val"]["recall@20"]:.4f}')
        print(f'{"":>9}  peak RSS so far {_peak_rss_mb():.0f} MB')


if __name__ == '__main__':
    main()
