r"""Per-epoch metric logging to CSV, and to TensorBoard when installed."""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any, Optional


class MetricLogger:
    r"""Writes one CSV row per epoch (the union of all keys seen, in first-seen
    order) and optionally mirrors the numeric values to TensorBoard.

    The CSV is rewritten from the kept history whenever a new column
    appears or a resumed run restores its history, so the file always
    matches the checkpoint it belongs to.

    Args:
        path (str): The CSV file.
        tensorboard_dir (str, optional): Where to write TensorBoard events;
            needs the :obj:`tensorboard` package. (default: :obj:`None`)
    """
    def __init__(self, path: str, tensorboard_dir: Optional[str] = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self._writer: Any = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ValueError('TensorBoard logging needs the tensorboard package: '
                                 'pip install tensorboard (or leave it off)') from exc
            self._writer = SummaryWriter(tensorboard_dir)

    def restore(self, rows: Sequence[dict[str, Any]]) -> None:
        r"""Replaces the history by :obj:`rows` (from a checkpoint) and
        rewrites the CSV."""
        self.rows = [dict(r) for r in rows]
        self.columns = []
        for row in self.rows:
            self._add_columns(row)
        self._rewrite()

    def log(self, row: dict[str, Any]) -> None:
        r"""Appends the metrics of one epoch (must contain :obj:`'epoch'`)."""
        self.rows.append(dict(row))
        if self._add_columns(row) or len(self.rows) == 1:
            self._rewrite()
        else:
            with open(self.path, 'a', newline='') as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self._writer is not None:
            for key, value in row.items():
                if key != 'epoch' and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, int(row['epoch']))
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _add_columns(self, row: dict[str, Any]) -> bool:
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def _rewrite(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, 'w', newline='') as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.path})'
