r"""``mllmrec stats PATH``: the size and split of a dataset."""
from __future__ import annotations

import argparse
import json

from mllmrec_pyg.data import dataset_stats, load_dataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'stats', help='print users, items, interactions and the split',
        description='Print the number of users, items and interactions of a '
        "dataset and its train/valid/test split. PATH is a dataset folder or "
        "'synthetic[:users=N,items=M,seed=S]'.")
    p.add_argument('path', metavar='PATH')
    p.add_argument('--format', choices=('json', 'table'), default='table')
    p.add_argument('--split', default='auto',
                   choices=('auto', 'given', 'mmrec', 'user_temporal',
                            'global_temporal'))
    p.add_argument('--seed', type=int, default=2024, help='seed of a drawn split')
    p.add_argument('--k-core', type=int, default=None,
                   help='k-core filter (default: 5 for raw Amazon, else none)')
    p.add_argument('--inter-file', default=None, metavar='FILE',
                   help='the interaction file, when the folder holds several (relative '
                   'to the folder)')
    p.add_argument('--details', action='store_true',
                   help='also print the processing report (duplicates, '
                   'cold-start users, ...)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = load_dataset(args.path, split=args.split, seed=args.seed,
                        k_core=args.k_core, inter_file=args.inter_file)
    stats: dict = dict(dataset_stats(data))
    if args.details:
        stats['report'] = {k: v for k, v in data.report.items() if k != 'warnings'}
        stats['domain'] = data.domain
    if args.format == 'json':
        print(json.dumps(stats))
    else:
        width = max(len(k) for k in stats)
        for key, value in stats.items():
            if isinstance(value, int):
                print(f'{key:<{width}}  {value:>10,}')
            else:
                print(f'{key:<{width}}  {value}')
    return 0
