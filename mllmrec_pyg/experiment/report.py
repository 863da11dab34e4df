r"""The ``report.md`` of a run folder, for a person to read: the protocol in
one line, the metric tables of validation and test, the training curves
(PNG plots of the loss and of validation Recall@20 per epoch, the selected
epoch marked), the grid search when there was one, and the resolved
settings.

.. code-block:: python

    from mllmrec_pyg.experiment.report import read_run_metrics, write_report

    files = write_report('runs/sports', config, read_run_metrics('runs/sports'))
    # ['report.md', 'plots/training_loss.png', 'plots/val_recall_at_20.png']

Everything is read from the run folder (``metrics.json``, ``log.csv``,
``grid.csv``): the report stage of :func:`~mllmrec_pyg.experiment.run_experiment`
and ``mllmrec report RUN_DIR`` write the same files.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mllmrec_pyg.utils.paths import replace_file

from .config import ExperimentConfig

#: The version of what :func:`write_report` writes; part of the report
#: stage's key, so a run folder written by an older version gets the new
#: report (and plots) on its next run.
REPORT_FORMAT = 3

#: The metric families and cut-offs of the accuracy table.
TABLE_METRICS = ('recall', 'ndcg', 'precision', 'map')
TABLE_KS = (5, 10, 20, 50)

#: The beyond-accuracy metrics of the evaluator
#: (:mod:`mllmrec_pyg.metrics.beyond_accuracy`), in their own table.
BEYOND_METRICS = ('coverage', 'novelty')

#: The column headers of the metric families.
_SHORT = {'recall': 'R', 'ndcg': 'N', 'precision': 'P', 'map': 'MAP', 'hit': 'Hit',
          'coverage': 'Coverage', 'novelty': 'Novelty'}

#: The folder of the plots, inside the run folder.
PLOTS_FOLDER = 'plots'

#: The loss plot, relative to the run folder.
LOSS_PLOT = f'{PLOTS_FOLDER}/training_loss.png'

#: The validation metric always plotted (the paper's selection metric).
PLOTTED_METRIC = 'recall@20'


def metric_label(metric: str) -> str:
    r"""The short header of a metric: :obj:`'recall@20'` -> :obj:`'R@20'`."""
    family, _, k = metric.partition('@')
    short = _SHORT.get(family, family)
    return f'{short}@{k}' if k else short


def validation_plot(metric: str) -> str:
    r"""The plot of validation :obj:`metric` per epoch, relative to the run
    folder: :obj:`'recall@20'` -> :obj:`'plots/val_recall_at_20.png'`."""
    name = ''.join(c if c.isalnum() else '_' for c in metric.replace('@', '_at_'))
    return f'{PLOTS_FOLDER}/val_{name}.png'


def read_run_metrics(run_dir: str) -> Dict[str, Any]:
    r"""Reads :obj:`run_dir`'s ``metrics.json``; a missing or unreadable file
    is a one-line error naming it and the fix.

    Args:
        run_dir (str): The ``--out`` folder of ``mllmrec train`` or
            ``mllmrec run``.
    """
    path = os.path.join(run_dir, 'metrics.json')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: not found; RUN_DIR must be the --out folder of '
                                '`mllmrec train` or `mllmrec run`')
    try:
        with open(path, encoding='utf-8') as f:
            metrics = json.load(f)
        if not isinstance(metrics, dict):
            raise ValueError('not a mapping')
    except ValueError:  # json's errors, UnicodeDecodeError
        raise ValueError(f'{path}: not a readable metrics.json (corrupt or truncated); '
                         'rerun the run with --force evaluate to write it again') from None
    return metrics


def is_leaked(inputs: Mapping[str, Any]) -> bool:
    r"""Whether the user inputs of a run (its ``metrics.json['inputs']``)
    saw validation and test items (the full-history preference mode)."""
    users = str(inputs.get('user_features', ''))
    summary = inputs.get('preference_summary') or {}
    sources = inputs.get('preference_source') or summary.get('preference_source') or ()
    if isinstance(sources, str):
        sources = [sources]
    return (bool(inputs.get('leaked')) or 'LEAKED' in users
            or 'full_history' in list(sources))


def protocol_line(metrics: Mapping[str, Any]) -> str:
    r"""Where the model inputs came from, in one line: user preferences from
    TRAINING items, or the LEAKED full-history mode; which backend and
    model wrote the item and user texts; how many users fell back to the
    training-items stand-in."""
    inputs = metrics.get('inputs', {}) or {}
    users = str(inputs.get('user_features', 'learned ID embeddings'))
    head = ('LEAKED: user inputs saw validation and test items' if is_leaked(inputs) else
            'user inputs from TRAINING interactions only')
    parts = [head]
    if 'item_features' in inputs:
        parts.append(f"items: {inputs['item_features']}")
    parts.append(f'users: {users}')
    summary = inputs.get('preference_summary') or {}
    if summary.get('backend'):
        model = f" ({summary['model']})" if summary.get('model') else ''
        parts.append(f"user preferences written by {summary['backend']}{model}")
    if 'users_with_stand_in' in inputs:
        parts.append(f"{inputs['users_with_stand_in']} users fell back to the stand-in")
    elif users.startswith('stand-in'):
        parts.append('every user uses the stand-in')
    return '; '.join(parts)


def _cells(values: Mapping[str, Any], names: Sequence[str]) -> List[str]:
    return [f'{float(values[n]):.4f}' if isinstance(values.get(n), (int, float)) else '-'
            for n in names]


def _table(metrics: Mapping[str, Any], names: Sequence[str]) -> List[str]:
    lines = ['| split | ' + ' | '.join(metric_label(n) for n in names) + ' |',
             '|' + '---|' * (1 + len(names))]
    for split in ('val', 'test'):
        values = metrics.get(split, {}) or {}
        lines.append(f'| {split} | ' + ' | '.join(_cells(values, names)) + ' |')
    return lines


def metric_table(metrics: Mapping[str, Any]) -> List[str]:
    r"""The Markdown table of R/N/P/MAP at 5/10/20/50 for val and test
    (4 decimals; ``-`` for a metric the run did not compute)."""
    return _table(metrics, [f'{m}@{k}' for m in TABLE_METRICS for k in TABLE_KS])


def beyond_accuracy_table(metrics: Mapping[str, Any]) -> List[str]:
    r"""The Markdown table of catalogue coverage and novelty at 5/10/20/50
    for val and test (empty when the run computed neither)."""
    names = [f'{m}@{k}' for m in BEYOND_METRICS for k in TABLE_KS]
    if not any(n in (metrics.get(s) or {}) for s in ('val', 'test') for n in names):
        return []
    return _table(metrics, names)


#: The columns of the representation table: (header, ``metrics.json`` key).
_REPRESENTATION_COLUMNS = (('alignment', 'alignment'),
                           ('uniformity (users)', 'uniformity_user'),
                           ('uniformity (items)', 'uniformity_item'),
                           ('uniformity', 'uniformity'), ('pairs', 'num_pairs'))


def representation_table(metrics: Mapping[str, Any]) -> List[str]:
    r"""The Markdown table of the alignment and uniformity of the final
    representations (:func:`~mllmrec_pyg.metrics.representation_summary`)
    for val and test (empty when the run did not record them)."""
    block = metrics.get('representation') or {}
    splits = [s for s in ('val', 'test') if isinstance(block.get(s), Mapping)]
    if not splits:
        return []
    lines = ['| split | ' + ' | '.join(h for h, _ in _REPRESENTATION_COLUMNS) + ' |',
             '|' + '---|' * (1 + len(_REPRESENTATION_COLUMNS))]
    for split in splits:
        values = block[split]
        cells = [str(values[k]) if k == 'num_pairs' and isinstance(values.get(k), int)
                 else _cells(values, [k])[0] for _, k in _REPRESENTATION_COLUMNS]
        lines.append(f'| {split} | ' + ' | '.join(cells) + ' |')
    return lines


def _read_csv(path: str) -> List[Dict[str, str]]:
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def _number(text: Optional[str]) -> float:
    try:
        return float(text) if text not in (None, '') else math.nan
    except ValueError:
        return math.nan


def training_log(run_dir: str, metrics: Mapping[str, Any]) -> Tuple[Optional[str], str]:
    r"""The ``log.csv`` of the selected model, relative to :obj:`run_dir`:
    the run folder's own, or, after a grid search, that of the selected
    grid point (``grid/run_<i>/log.csv``, the row of ``grid.csv`` marked
    ``selected``).  Returns the path (:obj:`None` when there is none) and
    why not."""
    if 'grid_search' not in metrics:
        path = 'log.csv'
    else:
        table = str(metrics['grid_search'].get('table', 'grid.csv'))
        try:
            rows = _read_csv(os.path.join(run_dir, table))
            index = [int(row.get('selected') or 0) for row in rows].index(1)
        except (OSError, ValueError, csv.Error):
            return None, f'{table} is missing or names no selected grid point'
        path = f'grid/run_{index}/log.csv'
    if not os.path.isfile(os.path.join(run_dir, path)):
        return None, f'{path} is missing'
    return path, ''


def _plot_curves(run_dir: str, log_path: str, best_epoch: Optional[int],
                 val_metric: str) -> Tuple[List[Tuple[str, str]], str]:
    r"""Writes the loss and validation plots from :obj:`log_path`; returns
    (caption, file) of each and why a plot is missing."""
    from .plots import plot_epoch_curve

    try:
        rows = _read_csv(os.path.join(run_dir, log_path))
        epochs = [int(row['epoch']) for row in rows]
    except (OSError, KeyError, ValueError, TypeError, csv.Error):
        return [], f'{log_path} is unreadable (no epoch column)'
    if not rows:
        return [], f'{log_path} has no epoch'
    plots: List[Tuple[str, str]] = []
    missing: List[str] = []
    if 'loss' in rows[0]:
        plot_epoch_curve(epochs, [_number(r.get('loss')) for r in rows],
                         os.path.join(run_dir, LOSS_PLOT), best_epoch,
                         ylabel='training loss', title='Training loss per epoch')
        plots.append(('Training loss per epoch', LOSS_PLOT))
    else:
        missing.append('loss')
    for metric in dict.fromkeys([PLOTTED_METRIC, val_metric]):
        column = f'val_{metric}'
        if column not in rows[0]:
            missing.append(column)
            continue
        caption = f'Validation {metric_label(metric)} per epoch'
        plot_epoch_curve(epochs, [_number(r.get(column)) for r in rows],
                         os.path.join(run_dir, validation_plot(metric)), best_epoch,
                         ylabel=f'validation {metric}', title=caption)
        plots.append((caption, validation_plot(metric)))
    why = f"{log_path} has no {', '.join(missing)} column" if missing else ''
    return plots, why


def _remove_old_plots(run_dir: str, keep: Sequence[str]) -> None:
    r"""Removes the plots of an earlier report that this one does not draw
    (so no PNG outlives the report that linked it)."""
    folder = os.path.join(run_dir, PLOTS_FOLDER)
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        relative = f'{PLOTS_FOLDER}/{name}'
        ours = name == os.path.basename(LOSS_PLOT) or (
            name.startswith('val_') and name.endswith('.png'))
        if ours and relative not in keep:
            os.remove(os.path.join(folder, name))


def _escape(value: Any) -> str:
    return str(value).replace('|', '\\|')


def grid_table(run_dir: str, metrics: Mapping[str, Any], val_metric: str) -> List[str]:
    r"""The Markdown table of a grid search: each point's settings, best
    epoch and validation score, the selected one marked (test scores are
    left out: the choice is made on validation)."""
    info = metrics.get('grid_search')
    if not info:
        return []
    table = str(info.get('table', 'grid.csv'))
    try:
        rows = _read_csv(os.path.join(run_dir, table))
    except (OSError, csv.Error):
        return [f'{table} is missing or unreadable.']
    keys = list(info.get('grid', {}))
    column = f'val_{val_metric}'
    lines = ['| run | ' + ' | '.join(keys) + f' | best epoch | val {metric_label(val_metric)} '
             '| selected |', '|' + '---|' * (len(keys) + 4)]
    for i, row in enumerate(rows):
        score = _number(row.get(column))
        cells = [f'run_{i}', *(_escape(row.get(k, '')) for k in keys),
                 _escape(row.get('best_epoch', '')),
                 f'{score:.4f}' if not math.isnan(score) else '-',
                 'yes' if str(row.get('selected')) == '1' else '']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def write_report(run_dir: str, config: ExperimentConfig,
                 metrics: Mapping[str, Any]) -> List[str]:
    r"""Writes :obj:`run_dir`'s ``report.md`` and its PNG plots
    (``plots/training_loss.png``, ``plots/val_recall_at_20.png`` and, when
    the selection metric is another, its plot) and returns the files
    written, relative to :obj:`run_dir` (``report.md`` first).

    The plots are drawn from the ``log.csv`` of the selected model (see
    :func:`training_log`); without one the report says why and has no
    plots.

    Args:
        run_dir (str): The run folder.
        config (ExperimentConfig): The run's resolved config.
        metrics (Mapping[str, Any]): The run's ``metrics.json``.
    """
    train = (metrics.get('config') or {}).get('train') or config.train
    val_metric = str(train.get('val_metric', PLOTTED_METRIC))
    best = metrics.get('best_epoch')
    best_epoch = int(best) if isinstance(best, int) else None
    dataset = metrics.get('dataset') or config.dataset.get('path')
    lines = [f"# {metrics.get('model', config.model_name)} on "
             f"{metrics.get('dataset_name') or dataset}", '',
             f'Dataset: `{dataset}`' + (f"; split `{metrics['split_fingerprint']}`"
                                        if metrics.get('split_fingerprint') else '') + '.',
             '', f'Protocol: {protocol_line(metrics)}.', '',
             f"Selected epoch {best} of {metrics.get('epochs_trained')} "
             f"({'stopped early' if metrics.get('stopped_early') else 'epoch budget reached'}); "
             f"{metrics.get('selection', '')}.", '']
    evaluation = metrics.get('evaluation') or {}
    if evaluation:
        lines += [f"Evaluated users: {evaluation.get('num_users_val')} (val), "
                  f"{evaluation.get('num_users_test')} (test); validation items "
                  f"{'excluded' if evaluation.get('exclude_val_at_test') else 'ranked'} "
                  'at test time.', '']
    lines += ['## Metrics', ''] + metric_table(metrics)
    beyond = beyond_accuracy_table(metrics)
    if beyond:
        lines += ['', 'Beyond accuracy (catalogue coverage; novelty, the mean '
                  'self-information of the recommended items):', ''] + beyond
    representation = representation_table(metrics)
    if representation:
        lines += ['', 'Representations (Wang et al., KDD 2022: alignment of the positive '
                  'pairs and uniformity of the users and items of each split, on the '
                  'L2-normalised final representations; lower is better for both):',
                  ''] + representation

    log_path, why = training_log(run_dir, metrics)
    plots: List[Tuple[str, str]] = []
    if log_path is not None:
        try:
            plots, why = _plot_curves(run_dir, log_path, best_epoch, val_metric)
        except ImportError as exc:
            why = str(exc)
    _remove_old_plots(run_dir, [file for _, file in plots])
    lines += ['', '## Training curves', '']
    if log_path is not None:
        lines += [f'From `{log_path}`; the dashed line marks the selected epoch '
                  f'({best}).', '']
    for caption, file in plots:
        lines += [f'![{caption}]({file})', '']
    if why:
        lines += [f'No {"other " if plots else ""}training curves: {why}.', '']

    grid = grid_table(run_dir, metrics, val_metric)
    if grid:
        selected = (metrics.get('grid_search') or {}).get('selected')
        lines += ['## Grid search', '',
                  f'Selected on validation {val_metric}: `{json.dumps(selected)}`.', '']
        lines += grid + ['']

    timing = metrics.get('timing') or {}
    if timing:
        lines += [f"Timing: {timing.get('mean_epoch_s', 0):.3f} s per epoch, "
                  f"{timing.get('mean_val_eval_s', 0):.3f} s per validation, "
                  f"{timing.get('total_s', 0):.1f} s in all.", '']
    lines += ['## Settings', '', '```json']
    lines += json.dumps(config.to_dict(), indent=2, default=str).splitlines()
    lines += ['```', '', 'Config layers: ' + (', '.join(config.sources) or 'defaults'), '']

    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines))

    replace_file(os.path.join(run_dir, 'report.md'), write)
    return ['report.md'] + [file for _, file in plots]
