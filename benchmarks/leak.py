r"""The leak, measured cleanly: MLLMRec trained with identical settings and
seed, only the user representation :math:`e_u` changes.

Variants (any number, comma-separated, trained one after the other):

* ``train-mean``: the mean of the MiniLM embeddings of each user's
  TRAINING items (the stand-in of ``mllmrec train``; no leak);
* ``full-mean``: the same mean over the user's FULL history (train + valid
  + test edges): LEAKED, the features encode the items the model is scored
  on (:func:`mllmrec_pyg.pipeline.mean_of_items` warns);
* ``text:FIELD``: a user text field of the dataset (``data['user'].meta``,
  e.g. Sports' ``idgenrec_user_text``, written from the full history) encoded
  by MiniLM;
* ``prefs:PATH`` (or ``prefs:LABEL=PATH``): a ``preferences.tsv`` written by
  ``mllmrec prefer`` / ``mllmrec run``, encoded by MiniLM; its
  ``preference_source`` column is reported (``full_history`` = LEAKED);
* ``random``: no user features, learnable ID embeddings (``user_init =
  'random'``, "w/o reasoning").

Users a ``text:``/``prefs:`` variant has no text for keep the train-mean
(the fallback of ``mllmrec run``); the count is printed.  Item features are
the MiniLM embeddings of the item text fields for every variant, made as
``mllmrec train`` makes them (:func:`mllmrec_pyg.pipeline.encode_items`).
Each variant is trained through
:func:`mllmrec_pyg.experiment.run_experiment` into ``OUT/VARIANT/`` (its
``metrics.json`` records how ``e_u`` was made); a variant whose inputs
and settings are unchanged is read back, not retrained (its stages are
content-keyed; with ``--resume`` and a larger ``--epochs``, one that hit
the epoch cap continues from its checkpoint).  The table is
printed and written to ``OUT/leak.tsv``.

    python benchmarks/leak.py /work/shared/data/amazon-sports \
        --variants train-mean,full-mean,text:idgenrec_user_text \
        --epochs 60 --out /work/runs/leak_sports
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import time
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mllmrec_pyg.experiment import build_config, load_experiment_data, run_experiment
from mllmrec_pyg.llm.outputs import read_preferences_tsv
from mllmrec_pyg.pipeline import encode_items, mean_of_items, preference_user_features

#: Columns of the printed table and of ``leak.tsv``; ``p_recall@20`` is the
#: two-sided paired t-test of per-user test Recall@20 against the first variant.
COLUMNS = ('variant', 'leaked', 'recall@10', 'recall@20', 'ndcg@10', 'ndcg@20',
           'p_recall@20', 'best_epoch', 'epochs_trained', 'stopped_early', 'seconds')

#: How :obj:`data['item'].x` is made, for every variant.
ITEM_FEATURES = ('all-MiniLM-L6-v2 embeddings of the item text fields '
                 '(composed and cut to the encoder budget, as `mllmrec train`)')


def _with_texts(data: HeteroData, base: Tensor, texts: Dict[int, str]) -> Tensor:
    r"""MiniLM embeddings of :obj:`texts` (through the encoding cache) for
    the users that have one, :obj:`base` for the others."""
    from mllmrec_pyg.llm.encode import TextEncoder
    with TextEncoder() as encoder:
        return preference_user_features(data, texts, encoder, base)[0]


def user_features(variant: str, data: HeteroData
                  ) -> Tuple[Optional[Tensor], List[str], bool, str]:
    r"""Returns :obj:`(user_x, config overrides, leaked, description)` of
    :obj:`variant`."""
    item_x = data['item'].x
    num_users = int(data['user'].num_nodes)
    if variant == 'train-mean':
        return (mean_of_items(data, item_x, 'train'), [], False,
                "mean of the MiniLM embeddings of each user's TRAINING items")
    if variant == 'full-mean':
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            x = mean_of_items(data, item_x, 'full_history')
        return (x, [], True, 'LEAKED: mean of the MiniLM embeddings of each '
                "user's FULL history (valid/test items included)")
    if variant == 'random':
        return (None, ['model.user_init=random'], False,
                'learnable ID embeddings (w/o reasoning)')
    fallback = mean_of_items(data, item_x, 'train')
    if variant.startswith('text:'):
        name = variant[len('text:'):]
        meta = getattr(data['user'], 'meta', None) or {}
        if name not in meta:
            raise ValueError(f"The dataset has no user text field '{name}' "
                             f'(it has {sorted(meta)})')
        texts = {u: str(t or '') for u, t in enumerate(meta[name])}
        with_text = sum(bool(t.strip()) for t in texts.values())
        return (_with_texts(data, fallback, texts), [], True,
                f"MiniLM embeddings of the user text field '{name}' "
                f'({with_text}/{num_users} users; the others: train-mean); '
                'assumed LEAKED (a dataset field, not built from training '
                'items by this package)')
    if variant.startswith('prefs:'):
        spec = variant[len('prefs:'):]
        path = spec.split('=', 1)[1] if '=' in spec else spec
        texts, sources = read_preferences_tsv(path, data)
        leaked = sources != ['train']
        return (_with_texts(data, fallback, texts), [], leaked,
                f'MiniLM embeddings of the preferences in {path} '
                f"(preference_source: {', '.join(sources)}; {len(texts)}/"
                f'{num_users} users, the others: train-mean)'
                + ('; LEAKED' if leaked else ''))
    raise ValueError(f"Unknown variant '{variant}' (expected train-mean, "
                     'full-mean, random, text:FIELD or prefs:[LABEL=]PATH)')


def variant_name(variant: str) -> str:
    r"""The variant's folder name under :obj:`OUT`."""
    if variant.startswith('prefs:'):
        spec = variant[len('prefs:'):]
        if '=' in spec:
            return 'prefs_' + spec.split('=', 1)[0]
        variant = 'prefs_' + os.path.basename(os.path.dirname(os.path.abspath(spec)))
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', variant)


def row_of(name: str, metrics: Dict[str, Any], leaked: bool) -> Dict[str, Any]:
    test = metrics['test']
    return {'variant': name, 'leaked': 'LEAKED' if leaked else 'no',
            'recall@10': test.get('recall@10'), 'recall@20': test.get('recall@20'),
            'ndcg@10': test.get('ndcg@10'), 'ndcg@20': test.get('ndcg@20'),
            'best_epoch': metrics['best_epoch'],
            'epochs_trained': metrics['epochs_trained'],
            'stopped_early': metrics['stopped_early'],
            'seconds': round(metrics['timing']['total_s'], 1)}


def add_significance(rows: List[Dict[str, Any]], outs: List[str]) -> None:
    r"""Fills ``p_recall@20`` of every row with the paired t-test of its
    per-user test Recall@20 against the first row's."""
    from mllmrec_pyg.metrics import paired_t_test

    first = os.path.join(outs[0], 'per_user_test.npz')
    for row, out in zip(rows, outs, strict=True):
        row['p_recall@20'] = (None if out == outs[0] else paired_t_test(
            os.path.join(out, 'per_user_test.npz'), first).p_value)


def subset_rows(rows: List[Dict[str, Any]], outs: List[str], num_users: int
                ) -> List[Dict[str, Any]]:
    r"""The table's metrics averaged over the evaluated users with an index
    below :obj:`num_users` only (e.g. the users a partial LLM run covered),
    with the paired t-test against the first row on the same users."""
    from mllmrec_pyg.metrics import EvaluationResult, paired_t_test

    results = [EvaluationResult.load(os.path.join(out, 'per_user_test.npz')) for out in outs]
    masks = [result.users < num_users for result in results]
    subset = []
    for row, result, mask in zip(rows, results, masks, strict=True):
        values = {m: float(result.per_user[m][mask].double().mean())
                  for m in ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20')}
        p = None
        if result is not results[0]:
            if not torch.equal(result.users[mask], results[0].users[masks[0]]):
                raise ValueError('The runs evaluated different users')
            p = paired_t_test(result, results[0], users=range(num_users)).p_value
        subset.append({**row, **values, 'p_recall@20': p,
                       'variant': f"{row['variant']} (users < {num_users}, "
                                  f'n={int(mask.sum())})'})
    return subset


def print_table(rows: List[Dict[str, Any]]) -> None:
    print('\t'.join(COLUMNS))
    for row in rows:
        print('\t'.join(f'{row[c]:.4f}' if isinstance(row[c], float) and c != 'seconds'
                        else str(row[c]) for c in COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('path', metavar='DATASET_PATH')
    parser.add_argument('--variants', default='train-mean,full-mean',
                        help='comma-separated: train-mean, full-mean, random, '
                        'text:FIELD, prefs:[LABEL=]PATH (default: train-mean,full-mean)')
    parser.add_argument('--out', required=True, metavar='DIR')
    parser.add_argument('--epochs', type=int, default=None,
                        help='maximum epochs, the same cap for every variant '
                        '(default: 1000)')
    parser.add_argument('--patience', type=int, default=None,
                        help='early-stopping patience (default: 20)')
    parser.add_argument('--seed', type=int, default=2024)
    parser.add_argument('--config', default=None, metavar='FILE',
                        help='as for `mllmrec train`')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--progress', action='store_true')
    parser.add_argument('--subset-users', type=int, default=None, metavar='N',
                        help='also report every variant on the users with index < N '
                        '(those a partial `mllmrec prefer --max-users N` covered)')
    parser.add_argument('--resume', action='store_true',
                        help='continue variants that hit the epoch cap (stopped_early '
                        'false) from their checkpoint, up to --epochs')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    common = [f'train.seed={args.seed}']
    if args.epochs is not None:
        common.append(f'train.max_epochs={args.epochs}')
    if args.patience is not None:
        common.append(f'train.patience={args.patience}')
    config = build_config(args.path, config=args.config, overrides=common, model='mllmrec')
    base = load_experiment_data(config, args.path)
    start = time.perf_counter()
    base['item'].x = encode_items(base)
    print(f'item features: {time.perf_counter() - start:.1f} s', flush=True)
    os.makedirs(args.out, exist_ok=True)

    rows: List[Dict[str, Any]] = []
    outs: List[str] = []
    for variant in [v for v in args.variants.split(',') if v]:
        name = variant_name(variant)
        out = os.path.join(args.out, name)
        data = copy.copy(base)
        user_x, overrides, leaked, description = user_features(variant, data)
        metrics_path = os.path.join(out, 'metrics.json')
        if user_x is not None:
            data['user'].x = user_x
        elif 'x' in data['user']:
            del data['user'].x
        print(f'== {name}: {description}', flush=True)
        # An up-to-date variant (same inputs and settings) is not retrained.
        run_experiment(data, build_config(args.path, config=args.config,
                                          overrides=common + overrides, model='mllmrec'),
                       out, resume=args.resume, device=args.device,
                       progress=args.progress, log=print,
                       inputs={'item_features': ITEM_FEATURES, 'user_features': description,
                               'leak_variant': variant, 'leaked': leaked})
        with open(metrics_path, encoding='utf-8') as f:
            rows.append(row_of(name, json.load(f), leaked))
        outs.append(out)
        add_significance(rows, outs)
        table = rows + (subset_rows(rows, outs, args.subset_users)
                        if args.subset_users else [])
        with open(os.path.join(args.out, 'leak.tsv'), 'w', encoding='utf-8') as f:
            f.write('\t'.join(COLUMNS) + '\n')
            for row in table:
                f.write('\t'.join(str(row[c]) for c in COLUMNS) + '\n')
    print_table(table)


if __name__ == '__main__':
    main()
