r"""MLLMRec on Amazon Sports with the real item text (``idgenrec_text``)
encoded by all-MiniLM-L6-v2, the paper's Sports settings (alpha 0.4,
K_s 10, K_c 10, L 1, d1 256, d 64) and its ablations, trained with the
package's trainer (early stopping on validation Recall@20, patience 20).

Users are represented by a TRAINING-ONLY STAND-IN until the LLM stage
exists: the mean of the MiniLM embeddings of each user's training items
(no LLM-reasoned preference, no validation/test item).

Variants: ``full``; ``no_denoising`` (no similarity threshold,
alpha = None); ``no_jaccard`` (K_c = 0); ``no_item_gcn`` (item_layers = 0);
``no_reasoning`` (learnable ID user inputs, user_init = 'random');
``ui_lightgcn`` (the paper's "w/ user-item LightGCN" variant, ui_layers = 1).

    python benchmarks/mllmrec_sports.py [--variants full,no_jaccard,...]
        [--max-epochs 1000] [--out runs/mllmrec-sports] [--threads 2] [--resume]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import time
from typing import Dict, List

import torch

from mllmrec_pyg.experiment import build_config, prepare_experiment, run_experiment

SPORTS = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'amazon-sports'
#: variant -> config overrides on top of the amazon-sports recipe (the
#: paper's Sports settings).
VARIANTS: Dict[str, List[str]] = {
    'full': [],
    'no_denoising': ['graph.alpha=null'],
    'no_jaccard': ['graph.jaccard_k=0'],
    'no_item_gcn': ['model.item_layers=0'],
    'no_reasoning': ['model.user_init=random'],
    'ui_lightgcn': ['model.ui_layers=1'],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default=str(SPORTS))
    parser.add_argument('--variants', default=','.join(VARIANTS))
    parser.add_argument('--max-epochs', type=int, default=1000)
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--seed', type=int, default=2024)
    parser.add_argument('--out', default='runs/mllmrec-sports')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--progress', action='store_true')
    parser.add_argument('--resume', action='store_true',
                        help='continue each variant from OUT/VARIANT/checkpoint.pt when it exists '
                             '(same settings; a larger --max-epochs lifts an earlier cap)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    common = [f'train.max_epochs={args.max_epochs}', f'train.patience={args.patience}',
              f'train.seed={args.seed}']
    base_config = build_config(args.dataset, recipe='amazon-sports', model='mllmrec',
                               overrides=common + ['model.item_layers=0'], log=print)
    from mllmrec_pyg.experiment import load_experiment_data
    base = load_experiment_data(base_config, args.dataset)
    start = time.perf_counter()
    info = prepare_experiment(base, base_config)
    print(f'item encoding + user stand-in: {time.perf_counter() - start:.1f} s; {info}',
          flush=True)
    for variant in args.variants.split(','):
        config = build_config(args.dataset, recipe='amazon-sports', model='mllmrec',
                              overrides=common + VARIANTS[variant])
        start = time.perf_counter()
        result = run_experiment(base, config, os.path.join(args.out, variant),
                                resume=args.resume, progress=args.progress, log=print)
        test, metrics = result.test, result.metrics
        status = ('converged' if metrics['stopped_early']
                  else f"CAPPED at {metrics['epochs_trained']} epochs")
        print(f'{variant:>13}: best epoch {result.best_epoch} ({status}); test R@10 '
              f'{test["recall@10"]:.4f} R@20 {test["recall@20"]:.4f} N@10 {test["ndcg@10"]:.4f} '
              f'N@20 {test["ndcg@20"]:.4f} (val R@20 {result.val["recall@20"]:.4f}) | '
              f"graph {metrics['inputs'].get('item_graph_time_s', 0):.1f} s, epoch "
              f"{metrics['timing']['mean_epoch_s']:.2f} s, eval "
              f"{metrics['timing']['mean_val_eval_s']:.2f} s, peak RSS "
              f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB | '
              f"{metrics['inputs'].get('item_graph', 'no item graph')}", flush=True)


if __name__ == '__main__':
    main()
