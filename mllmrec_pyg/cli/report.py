r"""``mllmrec report RUN_DIR``: (re)writes a run folder's ``report.md`` and
its PNG plots from its ``metrics.json``, ``config.json`` and ``log.csv``."""
from __future__ import annotations

import argparse
import os


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'report', help="write a run folder's report.md and plots",
        description="Write RUN_DIR/report.md (settings, protocol, metric tables) and its "
        "plots (RUN_DIR/plots/: training loss and validation Recall@20 per epoch, the "
        "selected epoch marked) from the run's metrics.json, config.json and log.csv, as "
        "the report stage of `mllmrec run` does.")
    p.add_argument('run_dir', metavar='RUN_DIR')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.experiment import build_config
    from mllmrec_pyg.experiment.report import read_run_metrics, write_report

    metrics = read_run_metrics(args.run_dir)
    config_path = os.path.join(args.run_dir, 'config.json')
    if not os.path.exists(config_path):
        raise FileNotFoundError(f'{config_path}: not found; RUN_DIR must be the --out '
                                'folder of `mllmrec train` or `mllmrec run`')
    config = build_config(config=config_path)
    for file in write_report(args.run_dir, config, metrics):
        print(os.path.join(args.run_dir, file))
    return 0
