r"""``mllmrec train [DATASET_PATH] --model NAME --out DIR``: train a
recommender with early stopping on validation Recall@20 and report the test
metrics of the best validation epoch.

A thin layer over :func:`mllmrec_pyg.experiment.run_experiment`; the run
folder is described there (``metrics.json`` and ``topk_test.tsv`` are a
contract read by independent checks).

Under ``torchrun --nproc_per_node=N -m mllmrec_pyg train ...`` every rank
trains its shard of each batch with DistributedDataParallel (see
:class:`mllmrec_pyg.train.Trainer`); rank 0 alone prints and writes the run
folder.
"""
from __future__ import annotations

import argparse
import sys
from typing import List

from mllmrec_pyg.cli._llm_options import positive_int

#: Models the command trains (see :func:`mllmrec_pyg.nn.models.build_model`).
MODEL_CHOICES = ('mllmrec', 'lightgcn', 'bpr', 'vbpr', 'freedom', 'soil')


def non_negative_int(text: str) -> int:
    r"""An argparse :obj:`type`: an integer :obj:`>= 0` (argparse names the
    option in its one-line refusal)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be an integer >= 0 (got {text!r})')
    return value


def add_config_options(p: argparse.ArgumentParser) -> None:
    r"""The config layers shared by ``train`` and ``run``: recipe, config
    file, ``--set`` and ``--grid`` overrides, and shortcuts for common
    training settings."""
    group = p.add_argument_group('config (layers, later ones win: defaults < recipe < '
                                 '--config < --set)')
    group.add_argument('--recipe', default=None, metavar='NAME',
                       help='a dataset recipe by name (e.g. amazon-sports; see datasets/) '
                       "or file (default: the recipe named like the dataset's folder, "
                       'else none)')
    group.add_argument('--config', default=None, metavar='FILE',
                       help='JSON or YAML with sections dataset, model, graph, train, grid '
                       '(e.g. a run folder\'s config.json, which reproduces that run)')
    group.add_argument('--set', dest='overrides', action='append', default=[],
                       metavar='SECTION.KEY=VALUE',
                       help='override one setting, e.g. --set graph.alpha=0.6 (repeatable)')
    group.add_argument('--epochs', type=positive_int, default=None,
                       help='maximum epochs, i.e. --set train.max_epochs=N (default: 1000)')
    group.add_argument('--patience', type=non_negative_int, default=None,
                       help='early-stopping patience, i.e. --set train.patience=N '
                       '(default: 20)')
    group.add_argument('--seed', type=int, default=None,
                       help='seed of everything, i.e. --set train.seed=N (default: 2024)')
    group.add_argument('--inter-file', default=None, metavar='FILE',
                       help='the interaction file of a dataset folder that holds several '
                       '(relative to the folder), i.e. --set dataset.inter_file=FILE')


def add_run_options(p: argparse.ArgumentParser) -> None:
    r"""Options of the run itself (not part of the config)."""
    from mllmrec_pyg.experiment import STAGES

    p.add_argument('--force', action='append', default=[], choices=STAGES,
                   metavar='STAGE', help='rerun STAGE (and the stages after it) even if '
                   f'up to date; one of {", ".join(STAGES)} (repeatable)')
    add_device_options(p)


def add_device_options(p: argparse.ArgumentParser) -> None:
    r"""Where to train and whether to show progress bars."""
    p.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if "
                   'available)')
    p.add_argument('--no-progress', action='store_true', help='hide progress bars')


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'train', help='train a recommender and evaluate it (metrics.json, topk_test.tsv)',
        description='Train MLLMRec or a baseline with BPR, early stopping on validation '
        'Recall@20 (patience 20, max 1000 epochs), and write the val and test metrics '
        'of the best validation epoch to OUT/metrics.json and the top-50 test '
        'recommendations to OUT/topk_test.tsv. DATASET_PATH is a dataset folder or '
        "'synthetic[:users=N,items=M,seed=S]' (default: the recipe's or config's "
        'dataset.path). A rerun with nothing changed trains nothing.')
    p.add_argument('path', metavar='DATASET_PATH', nargs='?', default=None)
    p.add_argument('--model', default=None, choices=MODEL_CHOICES,
                   help="the model (default: the config's model.name)")
    p.add_argument('--out', required=True, metavar='DIR', help='output folder')
    add_config_options(p)
    p.add_argument('--grid', action='append', default=[], metavar='KEY=V1,V2,...',
                   help='search a model setting on validation, e.g. --grid '
                   'model.reg_weight=1e-4,1e-3 (repeatable)')
    p.add_argument('--exclude-val-at-test', action='store_true',
                   help='also exclude validation items when ranking for the test split, '
                   'i.e. --set train.exclude_val_at_test=true (default: off, as MMRec)')
    p.add_argument('--preferences', default=None, metavar='TSV',
                   help="user features for --model mllmrec: the preferences.tsv of "
                   "`mllmrec prefer` on this dataset and split, encoded by "
                   "all-MiniLM-L6-v2 (users without one keep the mean of their training "
                   "items); a full_history file is LEAKED and labelled so (default: the "
                   'training-items mean for every user)')
    p.add_argument('--item-graph', choices=('own', 'refined'), default=None,
                   help="--model freedom|soil: their 'own' item graph (default) or the "
                   "'refined' graph of our transforms (RefineItemGraph with the graph "
                   "section's settings), i.e. --set model.item_graph=data")
    p.add_argument('--resume', action='store_true',
                   help='continue from OUT/checkpoint.pt if present (with a grid: each '
                   'point from OUT/grid/run_<i>/checkpoint.pt)')
    p.add_argument('--deterministic', action='store_true',
                   help='ask PyTorch for deterministic kernels')
    p.add_argument('--tensorboard', action='store_true',
                   help='also log to TensorBoard in OUT/tb (needs tensorboard)')
    add_run_options(p)
    p.set_defaults(func=run)


def shortcut_overrides(args: argparse.Namespace) -> List[str]:
    r"""The ``--set`` strings of the shortcut options that were given."""
    import json

    out = list(args.overrides)
    for option, key in (('epochs', 'train.max_epochs'), ('patience', 'train.patience'),
                        ('seed', 'train.seed')):
        value = getattr(args, option, None)
        if value is not None:
            out.append(f'{key}={value}')
    if getattr(args, 'item_graph', None):
        out.append(f"model.item_graph={'data' if args.item_graph == 'refined' else 'own'}")
    if getattr(args, 'exclude_val_at_test', False):
        out.append('train.exclude_val_at_test=true')
    for option, key in (('preferences', 'dataset.preferences'),
                        ('inter_file', 'dataset.inter_file')):
        value = getattr(args, option, None)
        if value:
            out.append(f'{key}={json.dumps(value)}')
    return out


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_result(result: object) -> None:
    r"""The closing line of ``train`` and ``run``."""
    from mllmrec_pyg.experiment import ExperimentResult

    assert isinstance(result, ExperimentResult)
    val, test = result.val.summary, result.test.summary
    nan = float('nan')
    print(f'best epoch {result.best_epoch}: val recall@20 {val.get("recall@20", nan):.4f}'
          f' | test recall@20 {test.get("recall@20", nan):.4f} '
          f'ndcg@20 {test.get("ndcg@20", nan):.4f} -> {result.out_dir}')


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg import distributed
    from mllmrec_pyg.experiment import build_config, check_out_dir, run_experiment

    check_out_dir(args.out)
    if args.model is None and args.config is None:
        raise ValueError(f'name the model with --model (one of {", ".join(MODEL_CHOICES)})'
                         ' or give a --config with model.name')
    # Under torchrun (torchrun --nproc_per_node=N -m mllmrec_pyg train ...)
    # every rank runs this; rank 0 alone speaks and writes.
    main = distributed.launch_rank() == 0
    log = say if main else (lambda _: None)
    config = build_config(args.path, recipe=args.recipe, config=args.config,
                          overrides=shortcut_overrides(args), grid=args.grid,
                          model=args.model, log=log)
    try:
        result = run_experiment(args.path, config, args.out, resume=args.resume,
                                force=args.force, device=args.device,
                                deterministic=args.deterministic,
                                tensorboard=args.tensorboard,
                                progress=not args.no_progress, log=log)
    finally:
        distributed.destroy_distributed()
    if not main:
        return 0
    if result.stages_skipped:
        say(f'up to date, not rerun: {", ".join(result.stages_skipped)} '
            '(--force STAGE reruns one)')
    print_result(result)
    return 0
