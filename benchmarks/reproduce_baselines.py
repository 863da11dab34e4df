r"""Reproduces MMRec's published Recall@20 of BPR and LightGCN on Amazon Baby
and Sports with this package's trainer and evaluator (full ranking,
training items excluded, early stopping on validation Recall@20 with
patience 20, at most 1000 epochs, Adam 1e-3, batch 2048, embedding 64).

Model settings are MMRec's (``configs/model/BPR.yaml``,
``LightGCN``): the grid ``MMREC_GRID`` of each model (BPR:
``reg_weight`` in {2, 1, 1e-1, ..., 1e-5}; LightGCN: ``num_layers`` in
{1..4} x ``reg_weight`` in {1e-2, ..., 1e-6}) searched with
:func:`mllmrec_pyg.train.grid_search`, which chooses on VALIDATION (MMRec's
``quick_start`` chooses by test score).  ``--grid default`` trains the
models' default point only (BPR reg 1e-3; LightGCN 3 layers, reg 1e-4),
which is what fits a short session; ``--max-epochs`` caps training (then
the figure is labelled as capped).

Published (MMRec / the MLLMRec paper's baselines table), Recall@20:
Baby BPR 0.0575, LightGCN 0.0754; Sports BPR 0.0653, LightGCN 0.0864.
Our splits are other draws of MMRec's rule, so figures land near, not on.

    python benchmarks/reproduce_baselines.py [--datasets baby,sports]
        [--models bpr,lightgcn] [--grid default|mmrec] [--max-epochs 1000]
        [--out runs/baselines] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import torch

from mllmrec_pyg.experiment import build_config, load_experiment_data, run_experiment
from mllmrec_pyg.nn.models import MODELS

DATA = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data'
FOLDERS = {'baby': 'amazon-baby', 'sports': 'amazon-sports'}
#: The models' default settings, one point of MMRec's grid each.
DEFAULT_POINT = {'bpr': {'reg_weight': [1e-3]},
                 'lightgcn': {'num_layers': [3], 'reg_weight': [1e-4]}}
PUBLISHED = {('baby', 'bpr'): 0.0575, ('baby', 'lightgcn'): 0.0754,
             ('sports', 'bpr'): 0.0653, ('sports', 'lightgcn'): 0.0864}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--datasets', default='baby,sports')
    parser.add_argument('--models', default='bpr,lightgcn')
    parser.add_argument('--grid', choices=('default', 'mmrec'), default='default')
    parser.add_argument('--max-epochs', type=int, default=1000)
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--seed', type=int, default=999)  # MMRec's overall.yaml seed
    parser.add_argument('--out', default='runs/baselines')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--progress', action='store_true')
    parser.add_argument('--resume', action='store_true',
                        help='continue each run from its checkpoint under --out')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lines = []
    for dataset in args.datasets.split(','):
        path = str(DATA / FOLDERS[dataset])
        data = None
        for name in args.models.split(','):
            grid = (MODELS[name].MMREC_GRID if args.grid == 'mmrec'  # type: ignore[attr-defined]
                    else DEFAULT_POINT[name])
            config = build_config(path, model=name, overrides=[
                f'train.seed={args.seed}', f'train.max_epochs={args.max_epochs}',
                f'train.patience={args.patience}'], log=print,
                grid=[f"{k}={','.join(json.dumps(x) for x in v)}" for k, v in grid.items()])
            if data is None:
                data = load_experiment_data(config, path)
            out_dir = os.path.join(args.out, f'{dataset}-{name}')
            start = time.perf_counter()
            out = run_experiment(data, config, out_dir, resume=args.resume,
                                 progress=args.progress, log=print)
            metrics = out.metrics
            recall = out.test['recall@20']
            published = PUBLISHED[(dataset, name)]
            status = ('converged' if metrics['stopped_early'] else
                      f"CAPPED at {metrics['epochs_trained']} epochs")
            line = (f"{dataset:>6} {name:>8} {metrics['grid_search']['selected']} best epoch "
                    f'{out.best_epoch} ({status}): val R@20 {out.val["recall@20"]:.4f} | test '
                    f'R@20 {recall:.4f} N@20 {out.test["ndcg@20"]:.4f} | published '
                    f'{published:.4f} ({100 * (recall / published - 1):+.1f}%) | epoch '
                    f"{metrics['timing']['mean_epoch_s']:.2f} s, eval "
                    f"{metrics['timing']['mean_val_eval_s']:.2f} s, "
                    f'total {time.perf_counter() - start:.0f} s')
            print(line, flush=True)
            lines.append(line)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'summary.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
