r"""``mllmrec report RUN_DIR``: (re)writes a run folder's ``report.md``
from its ``metrics.json`` and ``config.json``."""
from __future__ import annotations

import argparse
import json
import os


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'report', help="write a run folder's report.md",
        description="Write RUN_DIR/report.md (settings, protocol, metric table) from the "
        "run's metrics.json and config.json, as the report stage of `mllmrec run` does.")
    p.add_argument('run_dir', metavar='RUN_DIR')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.experiment import build_config
    from mllmrec_pyg.experiment.report import write_report

    metrics_path = os.path.join(args.run_dir, 'metrics.json')
    config_path = os.path.join(args.run_dir, 'config.json')
    for path in (metrics_path, config_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f'{path}: not found; RUN_DIR must be the --out folder '
                                    'of `mllmrec train` or `mllmrec run`')
    try:
        with open(metrics_path, encoding='utf-8') as f:
            metrics = json.load(f)
        if not isinstance(metrics, dict):
            raise ValueError('not a mapping')
    except ValueError:  # json's errors, UnicodeDecodeError
        raise ValueError(f'{metrics_path}: not a readable metrics.json (corrupt or '
                         'truncated); rerun the run with --force evaluate to write it '
                         'again') from None
    config = build_config(config=config_path)
    write_report(os.path.join(args.run_dir, 'report.md'), config, metrics)
    print(os.path.join(args.run_dir, 'report.md'))
    return 0
