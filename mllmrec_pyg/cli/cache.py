r"""``mllmrec cache merge OUT.sqlite IN1.sqlite IN2.sqlite ...``: the union
of generation caches (e.g. those of ``--shard 1/N`` ... ``--shard N/N``
run on N machines), all or nothing
(:func:`~mllmrec_pyg.llm.merge.merge_caches`).

Exit status: 0 when every key had one generation; 1 when some keys held
different generations in different caches (the merged cache is written,
each such key keeping its first entry, and the first keys are listed); 2
for an error (a missing or unreadable input, :obj:`OUT` among the inputs),
with :obj:`OUT` left as it was.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'cache', help='work on generation caches (merge)',
        description='Work on the SQLite generation caches of `mllmrec '
        'describe`, `mllmrec prefer` and `mllmrec run`.')
    actions = p.add_subparsers(dest='cache_command', metavar='ACTION')
    actions.required = True
    merge = actions.add_parser(
        'merge', help='merge caches into one',
        description='Merge generation caches into OUT (created, or merged '
        'into when it exists; it must not be one of the inputs), e.g. the '
        '--cache files of `--shard 1/N` ... `--shard N/N`. Keys are content '
        'hashes, so entries from different caches never clash by accident. '
        'For a key several caches hold, the first entry seen is kept (OUT\'s '
        'own, then the inputs in the order given), except that a generation '
        'replaces a failure and a failure never replaces a generation; '
        'identical generations are merged silently. Different generations '
        'under one key are CONFLICTS: the first is kept, the count and the '
        'first keys are printed, and the exit status is 1 (0 without '
        'conflicts, 2 for an error). All or nothing: an interrupted or '
        'refused merge leaves OUT as it was.')
    merge.add_argument('out', metavar='OUT.sqlite', help='the merged cache')
    merge.add_argument('inputs', metavar='IN.sqlite', nargs='+',
                       help='the caches to merge, in order of precedence')
    merge.add_argument('--debug', action='store_true',
                       default=argparse.SUPPRESS,
                       help='show the traceback of an error (default: one '
                       'line)')
    merge.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from mllmrec_pyg.llm.merge import merge_caches

    report = merge_caches(args.out, args.inputs)
    for line in report.lines():
        print(line, file=sys.stderr)
    return 1 if report.conflicts else 0
