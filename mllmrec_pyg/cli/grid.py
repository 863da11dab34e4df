r"""``mllmrec grid [DATASET_PATH] --model NAME --grid SECTION.KEY=V1,V2,...
--out DIR``: a sensitivity sweep (the paper's RQ4) selected on validation,
with a heat map (two settings) or a line plot (one).

A thin layer over :func:`mllmrec_pyg.experiment.run_sweep`.
"""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from mllmrec_pyg.cli.train import (
        MODEL_CHOICES,
        add_config_options,
        add_device_options,
    )

    p = subparsers.add_parser(
        'grid', help='sweep settings, select on validation, draw the heat map or line plot',
        description='Train one model per combination of the --grid settings (model, graph '
        'or train sections), select the point of best VALIDATION Recall@20 (train.'
        'val_metric), evaluate the test split at that point only, and write OUT/sweep.csv, '
        'sweep.json, report.md and heatmap.png (two settings: validation R@20 and N@20, '
        'the selected cell framed) or sweep.png (one setting). The text encoding and the '
        'k-NN search are done once for all alpha values, the Jaccard top-k once for the '
        'largest K_c. Finished points are skipped on a rerun; --resume continues an '
        'interrupted one. Example: mllmrec grid data/amazon-sports --model mllmrec '
        '--grid graph.alpha=0.4,0.5,0.6,0.7 --grid graph.jaccard_k=5,10,15,20 --out '
        'runs/rq4')
    p.add_argument('path', metavar='DATASET_PATH', nargs='?', default=None)
    p.add_argument('--model', default=None, choices=MODEL_CHOICES,
                   help="the model (default: the config's model.name, else mllmrec)")
    p.add_argument('--out', required=True, metavar='DIR', help='the sweep folder')
    p.add_argument('--grid', dest='axes', action='append', default=[], required=True,
                   metavar='SECTION.KEY=V1,V2,...',
                   help='a setting and its values, e.g. --grid graph.alpha=0.4,0.5,0.6 '
                   '(repeatable; two give a heat map)')
    add_config_options(p)
    p.add_argument('--preferences', default=None, metavar='TSV',
                   help='user features for --model mllmrec: a preferences.tsv of '
                   '`mllmrec prefer` (default: the training-items mean)')
    p.add_argument('--resume', action='store_true',
                   help="continue an interrupted point from its checkpoint "
                   "(OUT/points/<i>/checkpoint.pt); finished points are always skipped")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.cli.train import say, shortcut_overrides
    from mllmrec_pyg.experiment import build_config, check_out_dir
    from mllmrec_pyg.experiment.sweep import parse_axis, run_sweep

    check_out_dir(args.out)
    axes = {}
    for text in args.axes:
        key, values = parse_axis(text)
        if key in axes:
            raise ValueError(f'--grid {key}: given twice; list all its values in one --grid')
        axes[key] = values
    config = build_config(args.path, recipe=args.recipe, config=args.config,
                          overrides=shortcut_overrides(args), model=args.model, log=say)
    result = run_sweep(args.path, config, axes, args.out, resume=args.resume,
                       device=args.device, progress=not args.no_progress, log=say)
    metric = result.val_metric
    print(f'{len(result.rows)} points ({result.points_run} trained now); selected on '
          f'validation {metric}: ' + ', '.join(f'{k}={v}' for k, v in
                                               result.selected_settings.items())
          + f" | val {metric} {result.rows[result.selected][f'val_{metric}']:.4f}"
          f" | test {metric} {result.test.get(metric, float('nan')):.4f} "
          f"ndcg@20 {result.test.get('ndcg@20', float('nan')):.4f} -> {args.out}")
    return 0
