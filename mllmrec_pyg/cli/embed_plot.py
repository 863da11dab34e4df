r"""``mllmrec embed-plot RUN_DIR... --out PREFIX [--split test|val]
[--max-users 2000] [--perplexity 30] [--seed 0]``: the t-SNE map of the
same users' representations per run, side by side, and the table of the
runs' alignment and uniformity (Wang et al., KDD 2022)."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'embed-plot', help='t-SNE of user representations per run, with alignment and '
        'uniformity',
        description='Draw the t-SNE map of the L2-normalised final user representations '
        '(representations.pt) of the same seeded sample of users for each run, one panel '
        'per run side by side, coloured by the users\' training interactions, and print '
        'the Markdown table of each run\'s Recall@20, alignment and uniformity (Wang et al., '
        'KDD 2022, from metrics.json). Writes PREFIX.png and PREFIX.md. Runs on different '
        'datasets or splits are refused.')
    p.add_argument('run_dirs', metavar='RUN_DIR', nargs='+',
                   help='run folders (the --out of `mllmrec train` or `mllmrec run`)')
    p.add_argument('--out', metavar='FILE_PREFIX', required=True,
                   help='write FILE_PREFIX.png and FILE_PREFIX.md')
    p.add_argument('--split', choices=('test', 'val'), default='test',
                   help='plot the users evaluated on this split and its alignment and '
                   'uniformity (default: test)')
    p.add_argument('--max-users', type=int, default=2000,
                   help='the most users drawn, a sample seeded with --seed '
                   '(default: 2000)')
    p.add_argument('--perplexity', type=float, default=30.0,
                   help="t-SNE's perplexity, below the number of users drawn "
                   '(default: 30)')
    p.add_argument('--seed', type=int, default=0,
                   help='the seed of the sample of users and of t-SNE (default: 0)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.experiment.embeddings import output_paths, write_embedding_plot

    output_paths(args.out)  # a bad --out fails before any t-SNE is computed
    if args.max_users < 1:
        raise ValueError(f'--max-users {args.max_users}: must be positive')
    paths = write_embedding_plot(args.run_dirs, args.out, split=args.split,
                                 max_users=args.max_users, perplexity=args.perplexity,
                                 seed=args.seed)
    with open(paths[0], encoding='utf-8') as f:
        print(f.read().split('\n![')[0], end='')
    print(f"wrote {', '.join(paths)}", file=sys.stderr)
    return 0
