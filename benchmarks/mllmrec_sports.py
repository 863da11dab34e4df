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
from typing import Any, Dict, Tuple

import torch

from mllmrec_pyg.cli.train import prepare_inputs
from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.nn.models import build_model
from mllmrec_pyg.train import Trainer, seed_everything

SPORTS = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'amazon-sports'
PAPER_GRAPH: Dict[str, Any] = {'knn_k': 10, 'alpha': 0.4, 'jaccard_k': 10}
#: variant -> (graph overrides, model overrides)
VARIANTS: Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]] = {
    'full': ({}, {}),
    'no_denoising': ({'alpha': None}, {}),
    'no_jaccard': ({'jaccard_k': 0}, {}),
    'no_item_gcn': ({}, {'item_layers': 0}),
    'no_reasoning': ({}, {'user_init': 'random'}),
    'ui_lightgcn': ({}, {'ui_layers': 1}),
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

    base = load_dataset(args.dataset)
    start = time.perf_counter()
    base, info = prepare_inputs(base, 'mllmrec', {'item_layers': 0}, PAPER_GRAPH)
    print(f'item encoding + user stand-in: {time.perf_counter() - start:.1f} s; {info}',
          flush=True)
    for variant in args.variants.split(','):
        graph_cfg, model_cfg = VARIANTS[variant]
        seed_everything(args.seed)
        start = time.perf_counter()
        data, info = prepare_inputs(base, 'mllmrec', model_cfg, {**PAPER_GRAPH, **graph_cfg})
        prep = time.perf_counter() - start
        model = build_model('mllmrec', data, **model_cfg)
        trainer = Trainer(model, data, max_epochs=args.max_epochs, patience=args.patience,
                          seed=args.seed, out_dir=os.path.join(args.out, variant),
                          progress=args.progress)
        result = trainer.fit(resume=args.resume)
        assert result.test is not None
        status = ('converged' if result.stopped_early
                  else f'CAPPED at {result.epochs_trained} epochs')
        test = result.test
        print(f'{variant:>13}: best epoch {result.best_epoch} ({status}); test R@10 '
              f'{test["recall@10"]:.4f} R@20 {test["recall@20"]:.4f} N@10 {test["ndcg@10"]:.4f} '
              f'N@20 {test["ndcg@20"]:.4f} (valid R@20 {result.valid["recall@20"]:.4f}) | '
              f'graph {prep:.1f} s, epoch {result.mean_epoch_time:.2f} s, eval '
              f'{result.mean_eval_time:.2f} s, peak RSS '
              f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB | '
              f'{info.get("item_graph", "no item graph")}', flush=True)


if __name__ == '__main__':
    main()
