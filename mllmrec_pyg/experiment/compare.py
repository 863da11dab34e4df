r"""A comparison of finished runs on one dataset and split: their main test
metrics and, against a baseline run, the paired :math:`t`-test per user of
one metric (:func:`~mllmrec_pyg.metrics.paired_t_test` on each run's
``per_user_test.npz``), as a Markdown table, a CSV file and a bar chart.

.. code-block:: python

    from mllmrec_pyg.experiment.compare import compare_runs

    comparison = compare_runs(['runs/bpr', 'runs/mllmrec'], metric='recall@20')
    print(comparison.to_markdown())
    comparison.write('runs/compare')  # compare.md, compare.csv, compare.png

Runs evaluated on different datasets or splits are refused (their users'
values cannot be paired): each run's ``metrics.json`` records the dataset
and the :func:`~mllmrec_pyg.data.split_fingerprint` of its training edges.
"""
from __future__ import annotations

import csv
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from mllmrec_pyg.metrics import EvaluationResult
from mllmrec_pyg.metrics.significance import PairedTTest, paired_t_test
from mllmrec_pyg.utils.paths import replace_file

from .report import is_leaked, metric_label, read_run_metrics

#: The test metrics of every comparison table.
MAIN_METRICS = ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20')

#: The ``config.json`` dataset settings that decide the split, compared
#: when a run's ``metrics.json`` predates its ``split_fingerprint``.
_SPLIT_SETTINGS = ('split', 'seed', 'k_core', 'inter_file', 'category', 'domain',
                   'remap_ids')


@dataclass
class RunSummary:
    r"""What a comparison reads of one run folder.

    Attributes:
        path (str): The run folder.
        name (str): Its name in the table (the folder's name).
        model (str): The model.
        dataset (str): The dataset's name (else its path).
        split_fingerprint (str, optional): The fingerprint of its training
            edges (:obj:`None` for a run folder written before it was
            recorded).
        split_settings (Dict[str, Any]): The split settings of its
            ``config.json``.
        exclude_val_at_test (bool): Whether validation items were excluded
            from the test ranking.
        leaked (bool): Whether its user inputs saw validation and test items.
        test (Dict[str, float]): Its test metrics (``metrics.json``).
        per_user_test (EvaluationResult): Its per-user test results.
    """
    path: str
    name: str
    model: str
    dataset: str
    split_fingerprint: Optional[str]
    split_settings: Dict[str, Any]
    exclude_val_at_test: bool
    leaked: bool
    test: Dict[str, float]
    per_user_test: EvaluationResult = field(repr=False)


def read_run(run_dir: str) -> RunSummary:
    r"""Reads a run folder's ``metrics.json``, ``config.json`` (when present)
    and ``per_user_test.npz``; a missing or unreadable file is a one-line
    error naming it.

    Args:
        run_dir (str): The ``--out`` folder of ``mllmrec train`` or
            ``mllmrec run``.
    """
    metrics = read_run_metrics(run_dir)
    settings: Dict[str, Any] = {}
    config_path = os.path.join(run_dir, 'config.json')
    if os.path.exists(config_path):
        try:
            with open(config_path, encoding='utf-8') as f:
                dataset = json.load(f).get('dataset', {})
            settings = {k: dataset.get(k) for k in _SPLIT_SETTINGS}
        except (ValueError, AttributeError):
            raise ValueError(f'{config_path}: not a readable config.json (corrupt or '
                             'truncated); rerun the run to write it again') from None
    per_user_path = os.path.join(run_dir, 'per_user_test.npz')
    if not os.path.exists(per_user_path):
        raise FileNotFoundError(f'{per_user_path}: not found; the run folder has no '
                                'per-user test results (rerun it with --force evaluate)')
    try:
        # Checked first: numpy's np.load leaves the file open when the
        # archive is corrupt.
        with zipfile.ZipFile(per_user_path) as archive:
            archive.namelist()
        per_user = EvaluationResult.load(per_user_path)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception:  # numpy's, zipfile's and json's errors
        raise ValueError(f'{per_user_path}: not a readable per-user result (corrupt or '
                         'truncated); rerun the run with --force evaluate') from None
    name = os.path.basename(os.path.normpath(run_dir)) or run_dir
    evaluation = metrics.get('evaluation') or {}
    return RunSummary(
        path=run_dir, name=name, model=str(metrics.get('model', '?')),
        dataset=str(metrics.get('dataset_name') or metrics.get('dataset') or '?'),
        split_fingerprint=metrics.get('split_fingerprint'), split_settings=settings,
        exclude_val_at_test=bool(evaluation.get('exclude_val_at_test', False)),
        leaked=is_leaked(metrics.get('inputs') or {}),
        test=dict(metrics.get('test') or {}), per_user_test=per_user)


def check_comparable(a: RunSummary, b: RunSummary) -> None:
    r"""Raises a one-line :class:`ValueError` naming both runs when their
    test users cannot be paired: another dataset, another split (by the
    split fingerprints, or by the ``config.json`` split settings of a run
    folder that predates them) or another test protocol."""
    head = f'cannot compare {a.path} and {b.path}'
    if a.dataset != b.dataset:
        raise ValueError(f'{head}: different datasets ({a.dataset} vs {b.dataset}); '
                         'compare runs of one dataset and split')
    if a.split_fingerprint is not None and b.split_fingerprint is not None:
        if a.split_fingerprint != b.split_fingerprint:
            raise ValueError(f'{head}: different splits of {a.dataset} '
                             f'({a.split_fingerprint} vs {b.split_fingerprint}); compare '
                             'runs of one dataset and split')
    elif a.split_settings != b.split_settings:
        old = [r.path for r in (a, b) if r.split_fingerprint is None]
        differ = ', '.join(f'{k}={a.split_settings.get(k)!r} vs '
                           f'{b.split_settings.get(k)!r}' for k in _SPLIT_SETTINGS
                           if a.split_settings.get(k) != b.split_settings.get(k))
        raise ValueError(f'{head}: different split settings of {a.dataset} ({differ}; '
                         f"{' and '.join(old)} record no split_fingerprint: rerun with "
                         '--force evaluate to record it); compare runs of one dataset and '
                         'split')
    if a.exclude_val_at_test != b.exclude_val_at_test:
        raise ValueError(f'{head}: different test protocols (exclude_val_at_test='
                         f'{a.exclude_val_at_test} vs {b.exclude_val_at_test}); rerun one '
                         'with the other setting')


@dataclass
class Comparison:
    r"""The outcome of :func:`compare_runs`.

    Attributes:
        metric (str): The metric of the tests and of the bar chart.
        runs (List[RunSummary]): The runs, the baseline first.
        tests (List[PairedTTest, optional]): Per run, its paired test against
            the baseline, :obj:`metric` of the run minus that of the baseline
            (:obj:`None` for the baseline).
    """
    metric: str
    runs: List[RunSummary]
    tests: List[Optional[PairedTTest]]

    @property
    def baseline(self) -> RunSummary:
        return self.runs[0]

    @property
    def columns(self) -> List[str]:
        r"""The test metrics of the table."""
        return list(dict.fromkeys([*MAIN_METRICS, self.metric]))

    def names(self) -> List[str]:
        r"""The runs' names: the folders' names, or their paths when two
        share a name; LEAKED runs say so."""
        plain = [r.name for r in self.runs]
        names = [r.path if plain.count(r.name) > 1 else r.name for r in self.runs]
        return [f'{n} (LEAKED)' if r.leaked else n for n, r in zip(names, self.runs,
                                                                  strict=True)]

    def to_markdown(self) -> str:
        r"""The comparison as a Markdown table (4 decimals; p-values with 4
        significant digits)."""
        label = metric_label(self.metric)
        header = ['run', 'model', 'dataset', *(metric_label(m) for m in self.columns),
                  f'Δ {label} vs baseline', 'p (paired t)', 'users']
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        for name, run, test in zip(self.names(), self.runs, self.tests, strict=True):
            values = [f'{run.test[m]:.4f}' if m in run.test else '-' for m in self.columns]
            if test is None:
                paired = ['baseline', '-', str(run.per_user_test.users.numel())]
            else:
                paired = [f'{test.mean_difference:+.4f}', f'{test.p_value:.4g}',
                          str(test.num_users)]
            lines.append('| ' + ' | '.join([name, run.model, run.dataset, *values,
                                             *paired]) + ' |')
        lines += ['', f'Test split; baseline {self.names()[0]}; Δ: mean per-user '
                  f'difference (run - baseline), two-sided paired t-test of {self.metric} '
                  'over the users both runs evaluated.']
        return '\n'.join(lines) + '\n'

    def to_csv(self, path: str) -> None:
        r"""Writes the comparison to the CSV file :obj:`path` (full
        precision)."""
        header = ['run', 'path', 'model', 'dataset', 'split_fingerprint', *self.columns,
                  'baseline', 'metric', 'mean_difference', 't_statistic', 'p_value',
                  'num_users']

        def write(tmp: str) -> None:
            with open(tmp, 'w', newline='', encoding='utf-8') as f:
                writer = csv.writer(f)
                writer.writerow(header)
                for name, run, test in zip(self.names(), self.runs, self.tests,
                                           strict=True):
                    paired: List[Any] = (['', '', '', run.per_user_test.users.numel()]
                                         if test is None else
                                         [repr(test.mean_difference),
                                          repr(test.t_statistic), repr(test.p_value),
                                          test.num_users])
                    writer.writerow([name, run.path, run.model, run.dataset,
                                     run.split_fingerprint or '',
                                     *(repr(run.test[m]) if m in run.test else ''
                                       for m in self.columns),
                                     int(test is None), self.metric, *paired])

        replace_file(path, write)

    def plot(self, path: str) -> None:
        r"""Writes the bar chart of :obj:`metric` per run (the baseline in
        grey; above each other bar its p-value) to the PNG :obj:`path`."""
        from .plots import plot_metric_bars

        values = [float(run.test.get(self.metric, math.nan)) for run in self.runs]
        labels = [f'{v:.4f}' if test is None else f'{v:.4f}\np={test.p_value:.3g}'
                  for v, test in zip(values, self.tests, strict=True)]
        plot_metric_bars(self.names(), values, path, ylabel=f'test {self.metric}',
                         highlight=0, labels=labels,
                         title=f'Test {metric_label(self.metric)} (baseline in grey)')

    def write(self, prefix: str) -> List[str]:
        r"""Writes :obj:`prefix`.md, .csv and .png and returns their paths
        (see :func:`output_paths`).

        Args:
            prefix (str): The files' path without extension.
        """
        paths = output_paths(prefix)
        def write_md(tmp: str) -> None:
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(self.to_markdown())
                f.write(f'\n![Test {metric_label(self.metric)} per run]'
                        f'({os.path.basename(paths[2])})\n')

        replace_file(paths[0], write_md)
        self.to_csv(paths[1])
        self.plot(paths[2])
        return paths


def output_paths(prefix: str) -> List[str]:
    r"""The Markdown, CSV and PNG files of a comparison written to
    :obj:`prefix` (a trailing ``.md``, ``.csv`` or ``.png`` is dropped),
    with their folder created; a folder given as :obj:`prefix`, or a place
    that cannot be written, is a one-line :class:`ValueError` naming
    ``--out``.

    Args:
        prefix (str): The files' path without extension, e.g.
            :obj:`'runs/compare'`.
    """
    from .store import make_out_dir

    root, ext = os.path.splitext(prefix)
    if ext.lower() in ('.md', '.csv', '.png'):
        prefix = root
    if not os.path.basename(prefix) or os.path.isdir(prefix):
        raise ValueError(f'--out {prefix}: is a folder; give a file prefix, e.g. '
                         f'{os.path.join(prefix, "compare")}')
    make_out_dir(os.path.dirname(os.path.abspath(prefix)), '--out')
    return [f'{prefix}.md', f'{prefix}.csv', f'{prefix}.png']


def compare_runs(run_dirs: Sequence[str], baseline: Optional[str] = None,
                 metric: str = 'recall@20') -> Comparison:
    r"""Compares finished runs on their test split: the main test metrics of
    each and, against :obj:`baseline`, the paired :math:`t`-test per user of
    :obj:`metric`.  Runs on another dataset or split than the baseline are
    refused with a one-line :class:`ValueError` naming both.

    Args:
        run_dirs (Sequence[str]): The run folders.
        baseline (str, optional): The run the others are tested against; one
            not among :obj:`run_dirs` is added first. (default: :obj:`None`,
            the first of :obj:`run_dirs`)
        metric (str, optional): A per-user test metric of the runs
            (``recall@K``, ``ndcg@K``, ``precision@K``, ``map@K``,
            ``hit@K``, ``novelty@K``). (default: :obj:`'recall@20'`)
    """
    dirs = list(run_dirs)
    if not dirs and baseline is None:
        raise ValueError('no run to compare: give one or more RUN_DIRs')
    if baseline is not None:
        same = [d for d in dirs if os.path.normpath(d) == os.path.normpath(baseline)]
        dirs = [baseline] + [d for d in dirs if d not in same]
    runs = [read_run(d) for d in dirs]
    for run in runs:
        if metric not in run.per_user_test.per_user:
            available = ', '.join(sorted(run.per_user_test.per_user))
            raise ValueError(f"--metric {metric}: {os.path.join(run.path, 'per_user_test.npz')}"
                             f' has no per-user {metric} (a paired test needs one; '
                             f'available: {available})')
    for run in runs[1:]:
        check_comparable(runs[0], run)
    tests: List[Optional[PairedTTest]] = [None]
    tests += [paired_t_test(run.per_user_test, runs[0].per_user_test, metric=metric)
              for run in runs[1:]]
    return Comparison(metric=metric, runs=runs, tests=tests)
