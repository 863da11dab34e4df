r"""Sensitivity sweeps (the paper's RQ4): a grid over any settings of an
experiment (``graph.alpha`` x ``graph.jaccard_k``, ``model.out_channels``,
``train.lr``, ...), selected on VALIDATION, with the test split read once,
at the selected point, and a heat map (two settings) or a line plot (one).

The expensive work is shared between points: the features are prepared
once, and a :class:`~mllmrec_pyg.transforms.CandidateCache` makes every
point's refined item graph reuse one k-NN search (thresholding a fixed
top-:math:`K_s` list at :math:`\alpha` is a filter) and one Jaccard search
(computed for the largest :math:`K_c` and cut per item for the others).

A sweep folder holds ``points/<i>/`` (each point's ``log.csv``,
``checkpoint.pt`` and ``point.json``, written when the point is finished),
``sweep.csv``, ``sweep.json``, the plot and ``report.md``.  A rerun skips
the finished points whose inputs are unchanged (content keys);
:obj:`resume=True` continues an interrupted point from its checkpoint.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import HeteroData

from .config import ExperimentConfig, resolve_config
from .store import check_out_dir, content_key

Log = Callable[[str], None]

#: The sections a sweep can vary (the dataset and its split stay fixed, so
#: every point is evaluated on the same users).
SWEEP_SECTIONS = ('model', 'graph', 'train')

#: The version of the point records: a change reruns every point.
POINT_FORMAT = 1


def _quiet(_: str) -> None:
    pass


def parse_axis(text: str) -> Tuple[str, List[Any]]:
    r"""Parses ``SECTION.KEY=V1,V2,...`` (e.g. ``graph.alpha=0.4,0.5``) into
    the key and its values (each read as JSON where it parses, ``None`` as
    :obj:`None`, else kept as a string)."""
    key, sep, raw = text.partition('=')
    key = key.strip()
    section, dot, name = key.partition('.')
    if not sep or not dot or not name or not raw.strip():
        raise ValueError(f"--grid {text!r}: expected SECTION.KEY=V1,V2,..., e.g. "
                         "graph.alpha=0.4,0.5,0.6")
    if section not in SWEEP_SECTIONS:
        fixed = ' (the dataset and its split are fixed over a sweep)' \
            if section == 'dataset' else ''
        raise ValueError(f"--grid {text!r}: a sweep varies {', '.join(SWEEP_SECTIONS)} "
                         f"settings, not {section!r}{fixed}")
    values: List[Any] = []
    for part in raw.split(','):
        part = part.strip()
        if part in ('None', 'none'):
            values.append(None)
            continue
        try:
            values.append(json.loads(part))
        except json.JSONDecodeError:
            values.append(part)
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f'--grid {text!r}: a value is listed twice')
    return key, values


def _layer(settings: Mapping[str, Any]) -> Dict[str, Any]:
    layer: Dict[str, Any] = {}
    for key, value in settings.items():
        section, _, name = key.partition('.')
        layer.setdefault(section, {})[name] = value
    return layer


def point_label(settings: Mapping[str, Any]) -> str:
    return ', '.join(f'{k}={v}' for k, v in settings.items())


@dataclass
class SweepResult:
    r"""The outcome of :func:`run_sweep`.

    Attributes:
        axes (Dict[str, List[Any]]): The swept settings and their values.
        rows (List[Dict[str, Any]]): One row per point, in grid order: its
            settings, best epoch, epochs, seconds, validation metrics
            (``val_*``) and, for the selected point only, test metrics
            (``test_*``).
        selected (int): The row with the best validation metric (the first
            on ties).
        val_metric (str): The selection metric.
        test (Dict[str, float]): The test metrics of the selected point.
        out_dir (str): The sweep folder.
        files (List[str]): The files written, relative to :obj:`out_dir`.
        points_run (int): Points trained by this call (the others were
            finished already).
    """
    axes: Dict[str, List[Any]]
    rows: List[Dict[str, Any]]
    selected: int
    val_metric: str
    test: Dict[str, float]
    out_dir: str
    files: List[str] = field(default_factory=list)
    points_run: int = 0

    @property
    def selected_settings(self) -> Dict[str, Any]:
        return {k: self.rows[self.selected][k] for k in self.axes}

    def __repr__(self) -> str:
        val = self.rows[self.selected].get(f'val_{self.val_metric}', float('nan'))
        return (f'{self.__class__.__name__}({len(self.rows)} points, selected '
                f'{point_label(self.selected_settings)}: val {self.val_metric}={val:.4f}, '
                f"test {self.val_metric}={self.test.get(self.val_metric, float('nan')):.4f})")


# --------------------------------------------------------------------------
# One point.
# --------------------------------------------------------------------------

class _Point:
    r"""The config, data and folder of one grid point."""

    def __init__(self, index: int, settings: Dict[str, Any], config: ExperimentConfig,
                 out_dir: str) -> None:
        self.index, self.settings, self.config = index, settings, config
        self.dir = os.path.join(out_dir, 'points', f'{index:03d}')
        self.record_path = os.path.join(self.dir, 'point.json')

    def read_record(self, key: str) -> Optional[Dict[str, Any]]:
        try:
            with open(self.record_path, encoding='utf-8') as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        if record.get('key') != key or record.get('format') != POINT_FORMAT:
            return None
        return record


def _point_data(base: HeteroData, config: ExperimentConfig, cache: Any,
                graph_time: Dict[str, float], progress: bool = False) -> HeteroData:
    r"""A shallow copy of :obj:`base` with the point's item graph."""
    from .runner import build_item_graph, needs_item_graph

    data = copy.copy(base)
    if needs_item_graph(config):
        start = time.perf_counter()
        build_item_graph(data, config, None, candidates=cache, progress=progress)
        graph_time['s'] = round(time.perf_counter() - start, 3)
    return data


def _trainer(data: HeteroData, config: ExperimentConfig, device: torch.device,
             out_dir: str, progress: bool) -> Any:
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer, seed_everything

    from .runner import _trainer_arguments

    kwargs = _trainer_arguments(config, progress, False)
    kwargs.pop('seed', None)
    seed_everything(config.seed)
    model = build_model(config.model_name, data, **config.model_params).to(device)
    return Trainer(model, data, seed=config.seed, out_dir=out_dir, **kwargs)


def _train_point(point: _Point, data: HeteroData, device: torch.device, resume: bool,
                 progress: bool) -> Dict[str, Any]:
    r"""Trains one point with early stopping on validation; returns its row
    (validation metrics at the best epoch; the test split is not read)."""
    trainer = _trainer(data, point.config, device, point.dir, progress)
    start = time.perf_counter()
    result = trainer.fit(resume=resume, evaluate_test=False)
    return {'best_epoch': int(result.best_epoch), 'epochs_trained': int(result.epochs_trained),
            'train_time_s': round(time.perf_counter() - start, 1),
            **{f'val_{k}': float(v) for k, v in result.val.summary.items()}}


def _test_point(point: _Point, data: HeteroData, device: torch.device,
                record: Optional[Dict[str, Any]] = None,
                log: Callable[[str], None] = lambda line: None,
                progress: bool = False) -> Tuple[Dict[str, float], Any]:
    r"""The selected point's best epoch (from its checkpoint) on the test
    split.  Where the checkpoint is gone (a sweep folder kept or copied with
    its ``point.json`` files only), the point is trained again first: the
    training is seeded, so it must reproduce the recorded validation
    metric, which is checked."""
    from .runner import _restore_best

    if not os.path.exists(os.path.join(point.dir, 'checkpoint.pt')):
        log(f'  {point_label(point.settings)}: no checkpoint.pt in {point.dir}; '
            'training the selected point again for its test evaluation')
        again = _train_point(point, data, device, False, progress)
        if record is not None:
            for key, value in record.items():
                if key.startswith('val_') and not math.isclose(
                        again.get(key, math.nan), value, rel_tol=1e-6, abs_tol=1e-9):
                    raise ValueError(
                        f'{point.record_path}: retraining the selected point gave '
                        f'{key} {again.get(key)} instead of the recorded {value}; '
                        'the point is not reproducible here: delete its point.json '
                        'and rerun the sweep')
    trainer = _trainer(data, point.config, device, point.dir, False)
    _restore_best(trainer)
    test = trainer.evaluator.evaluate(trainer.model, splits=('test', ))['test']
    return {k: float(v) for k, v in test.summary.items()}, test


# --------------------------------------------------------------------------
# The sweep.
# --------------------------------------------------------------------------

def _check_axes(axes: Mapping[str, Sequence[Any]], config: ExperimentConfig
                ) -> Dict[str, List[Any]]:
    if not axes:
        raise ValueError('--grid: give at least one SECTION.KEY=V1,V2,... to sweep')
    if config.grid:
        raise ValueError(f'the config has a grid section ({sorted(config.grid)}): a sweep '
                         'searches its own --grid settings; remove the grid section')
    out: Dict[str, List[Any]] = {}
    for key, values in axes.items():
        section, dot, name = key.partition('.')
        if not dot or section not in SWEEP_SECTIONS:
            raise ValueError(f"--grid {key}: expected SECTION.KEY with SECTION one of "
                             f"{', '.join(SWEEP_SECTIONS)}")
        if isinstance(values, (str, bytes)) or not list(values):
            raise ValueError(f'--grid {key}: needs a non-empty list of values')
        out[key] = list(values)
    return out


def _resolve_points(config: ExperimentConfig, axes: Dict[str, List[Any]],
                    out_dir: str) -> List[_Point]:
    r"""One checked config per combination (an unknown key or a badly
    typed value fails here, before anything is trained)."""
    base = config.to_dict()
    points = []
    for index, values in enumerate(itertools.product(*axes.values())):
        settings = dict(zip(axes, values, strict=True))
        label = '--grid ' + point_label(settings)
        point_config = resolve_config([base, _layer(settings)], ['config', label],
                                      model=config.model_name)
        point_config.sources = list(config.sources) + [label]
        points.append(_Point(index, settings, point_config, out_dir))
    return points


def run_sweep(
    data: Union[HeteroData, str, None],
    config: Union[ExperimentConfig, Mapping[str, Any], str, None],
    axes: Mapping[str, Sequence[Any]],
    out_dir: str,
    *,
    resume: bool = False,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
    log: Log = _quiet,
) -> SweepResult:
    r"""Trains one model per combination of :obj:`axes`, selects the point
    with the best VALIDATION ``train.val_metric`` (Recall@20 by default;
    the first on ties), evaluates the test split at that point only and
    writes the sweep folder (see the module) with a heat map of validation
    Recall@20 and NDCG@20 (two settings) or a line plot (one setting).

    .. code-block:: python

        from mllmrec_pyg.experiment import run_sweep

        result = run_sweep('data/amazon-sports', {'model': {'name': 'mllmrec'}},
                           {'graph.alpha': [0.4, 0.5, 0.6, 0.7],
                            'graph.jaccard_k': [5, 10, 15, 20]}, 'runs/rq4')
        print(result.selected_settings, result.test['recall@20'])

    Args:
        data (HeteroData or str, optional): The dataset or its path
            (:obj:`None`: the config's ``dataset.path``).
        config (ExperimentConfig or Mapping or str, optional): The base
            config (a layer or file is resolved with
            :func:`~mllmrec_pyg.experiment.build_config`).
        axes (Mapping[str, Sequence]): ``SECTION.KEY`` (``model``, ``graph``
            or ``train``) to the values to sweep.
        out_dir (str): The sweep folder.
        resume (bool, optional): Continue an interrupted point from its
            checkpoint (finished points are always skipped).
            (default: :obj:`False`)
        device (str or torch.device, optional): Where to train.
            (default: CUDA when available)
        progress (bool, optional): Progress bars. (default: :obj:`True`)
        log (callable, optional): Receives a line per point.
            (default: silent)
    """
    from mllmrec_pyg.transforms import CandidateCache

    from .runner import build_config, input_key, load_experiment_data, prepare_features

    check_out_dir(out_dir)
    if not isinstance(config, ExperimentConfig):
        config = build_config(data if isinstance(data, str) else None, config=config, log=log)
    axes = _check_axes(axes, config)
    points = _resolve_points(config, axes, out_dir)
    if data is None or isinstance(data, str):
        data = load_experiment_data(config, data)
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    os.makedirs(out_dir, exist_ok=True)
    config.save(os.path.join(out_dir, 'config.json'))

    prepare_features(data, config, config.dataset.get('preferences'), progress)
    jaccard = [int(p.config.graph.get('jaccard_k', 0)) for p in points]
    cache = CandidateCache(jaccard_k=max(jaccard))
    val_metric = str(config.train.get('val_metric', 'recall@20'))

    rows: List[Dict[str, Any]] = []
    ran = 0
    for point in points:
        graph_time: Dict[str, float] = {}
        pdata = _point_data(data, point.config, cache, graph_time, progress)
        key = content_key('sweep-point', POINT_FORMAT, input_key(pdata, point.config))
        record = point.read_record(key)
        if record is None:
            resuming = resume and os.path.exists(os.path.join(point.dir, 'checkpoint.pt'))
            log(f'point {point.index + 1}/{len(points)}: {point_label(point.settings)}'
                + (' (resuming)' if resuming else ''))
            row = _train_point(point, pdata, dev, resuming, progress)
            row['graph_time_s'] = graph_time.get('s', 0.0)
            record = {'format': POINT_FORMAT, 'key': key, 'settings': point.settings,
                      'row': row}
            from mllmrec_pyg.utils.paths import write_json
            os.makedirs(point.dir, exist_ok=True)
            write_json(point.record_path, record)
            ran += 1
            log(f'  val {val_metric} {row.get("val_" + val_metric, float("nan")):.4f} '
                f'(best epoch {row["best_epoch"]}, {row["train_time_s"]:.0f} s)')
        rows.append({**point.settings, **record['row']})

    from mllmrec_pyg.train.grid_search import select_best
    selected = select_best(rows, f'val_{val_metric}')
    # The selected point's graph again (a filter of the cached searches),
    # rather than every point's graph kept until the selection.
    chosen = _point_data(data, points[selected].config, cache, {})
    test, _ = _test_point(points[selected], chosen, dev, rows[selected], log, progress)
    rows[selected].update({f'test_{k}': v for k, v in test.items()})
    result = SweepResult(axes=axes, rows=rows, selected=selected, val_metric=val_metric,
                         test=test, out_dir=out_dir, points_run=ran)
    result.files = write_sweep(result, config)
    log(f'selected on validation: {point_label(result.selected_settings)} -> test '
        f'{val_metric} {test.get(val_metric, float("nan")):.4f}')
    return result


# --------------------------------------------------------------------------
# Outputs.
# --------------------------------------------------------------------------

def _metric_label(metric: str) -> str:
    name, _, k = metric.partition('@')
    short = {'recall': 'R', 'ndcg': 'N', 'precision': 'P', 'map': 'MAP'}.get(name, name)
    return f'{short}@{k}' if k else name


def _companion(val_metric: str) -> str:
    r"""The second metric of the plots: NDCG at the selection metric's
    cut-off (Recall when the selection metric is NDCG)."""
    name, _, k = val_metric.partition('@')
    return f"{'recall' if name == 'ndcg' else 'ndcg'}@{k or 20}"


def write_sweep(result: SweepResult, config: ExperimentConfig) -> List[str]:
    r"""Writes ``sweep.csv``, ``sweep.json``, the plot (``heatmap.png`` for
    two settings, ``sweep.png`` for one; none for more) and
    ``report.md``; returns their names."""
    from mllmrec_pyg.train.grid_search import write_table
    from mllmrec_pyg.utils.paths import write_json

    from .plots import plot_heatmaps, plot_sweep_line

    out = result.out_dir
    write_table(result.rows, os.path.join(out, 'sweep.csv'))
    write_json(os.path.join(out, 'sweep.json'), {
        'axes': result.axes, 'rows': result.rows, 'selected': result.selected,
        'selected_settings': result.selected_settings, 'selected_by': 'validation '
        + result.val_metric, 'test_at_selected': result.test,
        'model': config.model_name, 'dataset': config.dataset.get('path')}, default=str)
    files = ['sweep.csv', 'sweep.json']
    metrics = [result.val_metric, _companion(result.val_metric)]
    keys = list(result.axes)
    test_value = result.test.get(result.val_metric, float('nan'))
    title = (f'{config.model_name}: validation, selected cell framed (test '
             f'{_metric_label(result.val_metric)} there: {test_value:.4f})')
    if len(keys) == 2:
        rows_v, cols_v = result.axes[keys[0]], result.axes[keys[1]]
        grids = []
        for metric in metrics:
            grid = [[math.nan] * len(cols_v) for _ in rows_v]
            for row in result.rows:
                r, c = rows_v.index(row[keys[0]]), cols_v.index(row[keys[1]])
                grid[r][c] = float(row.get(f'val_{metric}', math.nan))
            grids.append(grid)
        plot_heatmaps(rows_v, cols_v, grids, os.path.join(out, 'heatmap.png'),
                      row_label=keys[0], col_label=keys[1],
                      titles=[f'validation {_metric_label(m)}' for m in metrics],
                      selected=(result.selected // len(cols_v), result.selected % len(cols_v)),
                      suptitle=title)
        files.append('heatmap.png')
    elif len(keys) == 1:
        curves = [[float(row.get(f'val_{m}', math.nan)) for row in result.rows] for m in metrics]
        plot_sweep_line(result.axes[keys[0]], curves, os.path.join(out, 'sweep.png'),
                        xlabel=keys[0], labels=[f'validation {_metric_label(m)}' for m in metrics],
                        selected=result.selected, title=title)
        files.append('sweep.png')
    _write_sweep_report(result, config, metrics, files)
    files.append('report.md')
    return files


def _write_sweep_report(result: SweepResult, config: ExperimentConfig,
                        metrics: Sequence[str], files: Sequence[str]) -> None:
    from mllmrec_pyg.utils.paths import replace_file

    keys = list(result.axes)
    lines = [f'# Sweep: {config.model_name} on {config.dataset.get("path")}', '',
             f'{len(result.rows)} points over {", ".join(keys)}; selected on VALIDATION '
             f'{_metric_label(result.val_metric)} (first on ties); the test split was read '
             'once, at the selected point.', '']
    for name in files:
        if name.endswith('.png'):
            lines += [f'![{name}]({name})', '']
    header = keys + ['best epoch'] + [f'val {_metric_label(m)}' for m in metrics] + \
        [f'test {_metric_label(m)}' for m in metrics]
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for index, row in enumerate(result.rows):
        mark = '**' if index == result.selected else ''
        cells = [f'{mark}{row[k]}{mark}' for k in keys] + [str(row.get('best_epoch', ''))]
        cells += [f"{row[f'val_{m}']:.4f}" if f'val_{m}' in row else '' for m in metrics]
        cells += [f"{row[f'test_{m}']:.4f}" if f'test_{m}' in row else '-' for m in metrics]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')

    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines) + '\n')
    replace_file(os.path.join(result.out_dir, 'report.md'), write)


__all__ = ['SWEEP_SECTIONS', 'SweepResult', 'parse_axis', 'point_label', 'run_sweep',
           'write_sweep']
