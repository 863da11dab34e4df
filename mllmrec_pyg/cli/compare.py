r"""``mllmrec compare RUN_DIR... [--baseline RUN_DIR] [--out PREFIX]
[--metric recall@20]``: one table over finished runs of one dataset and
split, with the paired t-test per user against a baseline."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'compare', help='compare runs on one dataset and split (paired t-test)',
        description='Print one Markdown table over finished runs: model, dataset, test '
        'R@10/20 and N@10/20, and against the baseline the mean per-user difference of '
        '--metric and the p-value of the two-sided paired t-test over the users both '
        'evaluated (per_user_test.npz). Runs on different datasets or splits are '
        'refused.')
    p.add_argument('run_dirs', metavar='RUN_DIR', nargs='+',
                   help='run folders (the --out of `mllmrec train` or `mllmrec run`)')
    p.add_argument('--baseline', metavar='RUN_DIR', default=None,
                   help='the run the others are tested against (default: the first '
                   'RUN_DIR)')
    p.add_argument('--metric', default='recall@20',
                   help='the per-user test metric of the t-test and the bar chart '
                   '(default: recall@20)')
    p.add_argument('--out', metavar='FILE_PREFIX', default=None,
                   help='also write FILE_PREFIX.md, .csv and a bar chart .png '
                   '(default: print only)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.experiment.compare import compare_runs, output_paths

    if args.out is not None:
        output_paths(args.out)  # a bad --out fails before anything is printed
    comparison = compare_runs(args.run_dirs, baseline=args.baseline, metric=args.metric)
    print(comparison.to_markdown(), end='')
    if args.out is not None:
        paths = comparison.write(args.out)
        print(f"wrote {', '.join(paths)}", file=sys.stderr)
    return 0
