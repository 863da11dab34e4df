r"""The ``mllmrec`` command line.

Each sub-command lives in its own module of this package, which defines
``add_parser(subparsers)`` (registering the command and setting
``func=run`` on it) and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

#: Sub-command modules, in the order ``mllmrec --help`` lists them.
_COMMANDS: List[str] = [
    'stats',
    'describe',
    'prefer',
    'train',
    'run',
    'report',
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='mllmrec',
        description='MLLMRec on PyTorch Geometric: datasets, LLM reasoning, '
        'refined item graphs, training and evaluation.')
    from mllmrec_pyg import __version__
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in _COMMANDS:
        module = importlib.import_module(f'mllmrec_pyg.cli.{name}')
        module.add_parser(sub)  # 'run' also adds encode, graph and evaluate
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        # Errors a user can cause: one clear line, no traceback.
        print(f'mllmrec {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    raise SystemExit(main())
