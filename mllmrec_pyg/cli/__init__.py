r"""The ``mllmrec`` command line.

Each sub-command lives in its own module of this package, which defines
``add_parser(subparsers)`` (registering the command and setting
``func=run`` on it) and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from typing import List, Optional, Tuple

#: Sub-command modules, in the order ``mllmrec --help`` lists them.
_COMMANDS: List[str] = [
    'stats',
    'describe',
    'prefer',
    'train',
    'run',
    'report',
    'compare',
    'grid',
    'embed_plot',
    'cache',
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='mllmrec',
        description='MLLMRec on PyTorch Geometric: datasets, LLM reasoning, '
        'refined item graphs, training and evaluation.')
    from mllmrec_pyg import __version__
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error (default: one line)')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in _COMMANDS:
        module = importlib.import_module(f'mllmrec_pyg.cli.{name}')
        module.add_parser(sub)  # 'run' also adds encode, graph and evaluate
    for command in sub.choices.values():
        # Also after the command (``mllmrec train ... --debug``).
        command.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                             help='show the traceback of an error (default: one line)')
    return parser


def _user_errors() -> Tuple[type, ...]:
    r"""The exceptions a user causes (bad input, a file that is missing,
    unreadable, corrupt or in the wrong place, an unreachable server): one
    line and exit code 2."""
    import pickle
    import sqlite3
    import zipfile

    errors: List[type] = [ValueError, OSError, sqlite3.Error, pickle.UnpicklingError,
                          zipfile.BadZipFile]
    try:
        import yaml
        errors.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def one_line(text: str) -> str:
    r"""A message on one line (the lines of :obj:`text` joined)."""
    return ' '.join(part.strip() for part in str(text).splitlines() if part.strip())


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None \
            and not str(exc).startswith(str(exc.filename)):
        # '[Errno 13] Permission denied: PATH' -> 'PATH: Permission denied'.
        other = f' -> {exc.filename2}' if exc.filename2 is not None else ''
        return f'{exc.filename}{other}: {exc.strerror}'
    return one_line(str(exc)) or type(exc).__name__


def _torch_load_file(exc: BaseException) -> Optional[str]:
    r"""The file :func:`torch.load` was reading when :obj:`exc` was raised
    (:obj:`None` when it was not raised by :func:`torch.load`)."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if (frame.f_code.co_name == 'load'
                and frame.f_code.co_filename.replace('\\', '/').endswith(
                    'torch/serialization.py')):
            target = frame.f_locals.get('f')
            found = str(target) if isinstance(target, (str, os.PathLike)) else '<file>'
        tb = tb.tb_next
    return found


def _generations_saved() -> int:
    try:
        from mllmrec_pyg.llm.cache import generations_saved
    except ImportError:
        return 0
    try:
        return int(generations_saved())
    except Exception:  # the count is a courtesy; never mask the interrupt
        return 0


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs ``mllmrec``; returns the exit status: 0, 2 for an error the
    user can fix (one line ``mllmrec COMMAND: error: MESSAGE``), 1 for a
    failed run (no LLM preference) or a bug (one line; ``--debug`` shows
    the traceback), 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, 'debug', False))
    prefix = f'mllmrec {args.command}'
    original_format = warnings.formatwarning
    if not debug:
        # Warnings as one line each, like errors (the library's warnings
        # keep Python's format for library users).
        warnings.formatwarning = (lambda message, category, *_: f'{prefix}: warning: '
                                  f"{' '.join(str(message).split())}\n")
    try:
        return _run(args, prefix, debug)
    finally:
        warnings.formatwarning = original_format


def _run(args: argparse.Namespace, prefix: str, debug: bool) -> int:
    r"""Runs the command, turning every exception into one line."""
    def fail(message: str, code: int) -> int:
        if debug:
            traceback.print_exc()
        print(f'{prefix}: error: {message}', file=sys.stderr, flush=True)
        return code

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f'{prefix}: interrupted, {_generations_saved()} generations saved, '
              'rerun to resume', file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        code = getattr(exc, 'exit_code', None)
        if isinstance(code, int):
            return fail(_message(exc), code)
        path = _torch_load_file(exc)
        if path is not None and not isinstance(exc, (PermissionError, FileNotFoundError,
                                                     IsADirectoryError)):
            # torch.load of a corrupt or truncated file raises RuntimeError,
            # KeyError, EOFError or OSError: the file, not the code, is at fault.
            return fail(f'{path}: not a readable file (corrupt or truncated: '
                        f'{type(exc).__name__}); delete it and rerun', 2)
        if isinstance(exc, _user_errors()):
            return fail(_message(exc), 2)
        return fail(f'unexpected {type(exc).__name__}: {_message(exc)} '
                    '(run with --debug for the traceback)', 1)


if __name__ == '__main__':
    raise SystemExit(main())
