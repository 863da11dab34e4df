r"""Hyper-parameter grid search with selection on the validation split only."""
from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from torch_geometric.data import HeteroData

from mllmrec_pyg.distributed import barrier, is_main_process
from mllmrec_pyg.nn.models.base import Recommender

from .reproducibility import seed_everything
from .trainer import Trainer, TrainResult


@dataclass
class GridSearchResult:
    r"""The outcome of :func:`grid_search`.

    Attributes:
        rows (List[Dict[str, Any]]): One row per combination: its
            hyper-parameters, best epoch, validation metrics (``val_*``) and
            test metrics at that epoch (``test_*``, reported, never used to
            choose).
        best_index (int): The row with the highest validation score.
        best_params (Dict[str, Any]): Its hyper-parameters.
        best_result (TrainResult): Its training result.
    """
    rows: list[dict[str, Any]]
    best_index: int
    best_params: dict[str, Any]
    best_result: TrainResult
    results: list[Optional[TrainResult]] = field(default_factory=list, repr=False)


def select_best(rows: Sequence[dict[str, Any]], column: str) -> int:
    r"""The index of the row with the highest :obj:`column` (rows without it,
    e.g. failed runs, never win); the FIRST of tied rows wins, as in early
    stopping.  Marks every row's ``selected`` column."""
    scores = [row.get(column, float('-inf')) for row in rows]
    best_index = 0
    for i, score in enumerate(scores):
        if score > scores[best_index]:
            best_index = i
    for i, row in enumerate(rows):
        row['selected'] = int(i == best_index)
    return best_index


def write_table(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    r"""Writes :obj:`rows` as CSV, the columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def grid_search(build_model: Callable[..., Recommender], data: HeteroData,
                grid: Mapping[str, Sequence[Any]], *, seed: int = 2024,
                val_metric: str = 'recall@20', table_path: Optional[str] = None,
                out_dir: Optional[str] = None, resume: bool = False,
                **trainer_kwargs: Any) -> GridSearchResult:
    r"""Trains one model per combination of :obj:`grid` and picks the one
    with the best VALIDATION :obj:`val_metric` at its best epoch (the test
    split never takes part in the choice, unlike MMRec's ``quick_start``,
    which chooses by test score).

    Args:
        build_model (Callable): Called as :obj:`build_model(**params)` after
            seeding, for each combination :obj:`params` of :obj:`grid`.
        data (torch_geometric.data.HeteroData): The dataset.
        grid (Mapping[str, Sequence]): Values of each hyper-parameter, e.g.
            :obj:`{'reg_weight': [1e-4, 1e-3], 'num_layers': [1, 2]}`.
        seed (int): Seed of every run. (default: :obj:`2024`)
        val_metric (str): The selection metric. (default: :obj:`'recall@20'`)
        table_path (str, optional): Where to write the table as CSV; the
            chosen row has ``selected = 1``. (default: :obj:`None`)
        out_dir (str, optional): Each run's checkpoint and log go to
            :obj:`out_dir/run_<i>`. (default: :obj:`None`)
        resume (bool, optional): Continue each run from its checkpoint in
            :obj:`out_dir/run_<i>` where there is one (an interrupted or
            capped search; a finished run is only re-evaluated).
            (default: :obj:`False`)
        **trainer_kwargs: Passed to :class:`Trainer`.
    """
    if not grid:
        raise ValueError('The grid is empty: give at least one hyper-parameter with values')
    names = list(grid)
    for name in names:
        if isinstance(grid[name], (str, bytes)) or len(grid[name]) == 0:
            raise ValueError(f"Grid entry '{name}' must be a non-empty list of values")
    combos = list(itertools.product(*(grid[n] for n in names)))

    rows: list[dict[str, Any]] = []
    results: list[Optional[TrainResult]] = []
    for index, values in enumerate(combos):
        params = dict(zip(names, values, strict=False))
        seed_everything(seed)
        model = build_model(**params)
        run_dir = None if out_dir is None else os.path.join(out_dir, f'run_{index}')
        trainer = Trainer(model, data, seed=seed, val_metric=val_metric, out_dir=run_dir,
                          **trainer_kwargs)
        row: dict[str, Any] = dict(params)
        try:
            result: Optional[TrainResult] = trainer.fit(resume=resume)
        except ValueError as exc:  # a diverging combination must not end the search
            result = None
            row['error'] = str(exc)
        if result is not None:
            row['best_epoch'] = result.best_epoch
            row['epochs_trained'] = result.epochs_trained
            row.update({f'val_{k}': v for k, v in result.val.summary.items()})
            if result.test is not None:
                row.update({f'test_{k}': v for k, v in result.test.summary.items()})
        rows.append(row)
        results.append(result)

    if all(r is None for r in results):
        raise ValueError('Every combination of the grid failed: ' + rows[0].get('error', ''))
    best_index = select_best(rows, f'val_{val_metric}')
    if table_path is not None and is_main_process():
        write_table(rows, table_path)
    barrier()

    best = results[best_index]
    assert best is not None
    return GridSearchResult(rows=rows, best_index=best_index,
                            best_params=dict(zip(names, combos[best_index], strict=False)),
                            best_result=best, results=results)
