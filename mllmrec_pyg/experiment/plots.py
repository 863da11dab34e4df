r"""PNG plots of a run folder and of a comparison of runs: the training loss
and a validation metric per epoch, with the selected epoch marked, and a bar
chart of one test metric over runs.

The figures are drawn on :class:`matplotlib.figure.Figure` objects with the
Agg renderer, never through :mod:`matplotlib.pyplot`: no display is needed,
and neither the global backend nor pyplot's figure registry is touched.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

#: The resolution of every PNG.
DPI = 100

#: PNG metadata: no "Software" entry (it names the matplotlib version), so
#: the same numbers give the same bytes on every machine.
_METADATA = {'Software': None}


def _figure(width: float = 6.0, height: float = 3.6) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # matplotlib is a dependency; a broken install
        raise ImportError('the plots need matplotlib: pip install matplotlib') from exc
    return Figure(figsize=(width, height), dpi=DPI, layout='tight')


def _save(figure: Any, path: str) -> None:
    r"""Writes :obj:`figure` as a PNG to :obj:`path` whole or not at all."""
    from mllmrec_pyg.utils.paths import replace_file

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    replace_file(path, lambda tmp: figure.savefig(tmp, format='png', dpi=DPI,
                                                  metadata=_METADATA))


def plot_epoch_curve(
    epochs: Sequence[int],
    values: Sequence[float],
    path: str,
    best_epoch: Optional[int] = None,
    ylabel: str = 'value',
    title: Optional[str] = None,
) -> None:
    r"""Plots :obj:`values` per epoch as a line and writes it as a PNG, with
    the selected :obj:`best_epoch` marked by a dashed vertical line and a
    dot on the curve.

    Args:
        epochs (Sequence[int]): The (1-based) epochs, e.g. the ``epoch``
            column of ``log.csv``.
        values (Sequence[float]): One value per epoch (a ``nan`` leaves a
            gap).
        path (str): The PNG file to write.
        best_epoch (int, optional): The epoch to mark. (default: :obj:`None`,
            no mark)
        ylabel (str, optional): The label of the y axis.
            (default: :obj:`'value'`)
        title (str, optional): The title. (default: :obj:`None`, no title)
    """
    if len(epochs) != len(values):
        raise ValueError(f'{path}: {len(epochs)} epochs but {len(values)} values to plot')
    figure = _figure()
    axes = figure.subplots()
    axes.plot(list(epochs), list(values), color='tab:blue', marker='.' if len(epochs) < 50
              else None, linewidth=1.5)
    if best_epoch is not None and best_epoch in epochs:
        value = values[list(epochs).index(best_epoch)]
        axes.axvline(best_epoch, color='tab:red', linestyle='--', linewidth=1.0,
                     label=f'selected epoch {best_epoch}')
        axes.plot([best_epoch], [value], color='tab:red', marker='o', linestyle='none')
        axes.legend(loc='best', frameon=False)
    from matplotlib.ticker import MaxNLocator
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel('epoch')
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    _save(figure, path)


def plot_metric_bars(
    names: Sequence[str],
    values: Sequence[float],
    path: str,
    ylabel: str = 'value',
    highlight: Optional[int] = 0,
    labels: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> None:
    r"""A bar chart of one value per run, written as a PNG.

    Args:
        names (Sequence[str]): The bars' names (the runs).
        values (Sequence[float]): One value per bar.
        path (str): The PNG file to write.
        ylabel (str, optional): The label of the y axis.
            (default: :obj:`'value'`)
        highlight (int, optional): The bar drawn in another colour (the
            baseline). (default: :obj:`0`; :obj:`None`: none)
        labels (Sequence[str], optional): A text above each bar (e.g. the
            value and the p-value). (default: :obj:`None`, the values)
        title (str, optional): The title. (default: :obj:`None`, no title)
    """
    if len(names) != len(values) or (labels is not None and len(labels) != len(values)):
        raise ValueError(f'{path}: the bar chart needs one name, value and label per bar')
    figure = _figure(max(4.0, 1.2 * len(names) + 2.0), 3.8)
    axes = figure.subplots()
    colors = ['tab:gray' if i == highlight else 'tab:blue' for i in range(len(names))]
    positions = list(range(len(names)))
    bars = axes.bar(positions, list(values), color=colors)
    axes.bar_label(bars, labels=list(labels) if labels is not None else
                   [f'{v:.4f}' for v in values], fontsize=8, padding=2)
    axes.set_xticks(positions, list(names), rotation=20 if len(names) > 3 else 0,
                    ha='right' if len(names) > 3 else 'center')
    axes.set_ylabel(ylabel)
    top = max([float(v) for v in values] + [0.0])
    axes.set_ylim(0.0, top * 1.2 if top > 0 else 1.0)
    if title:
        axes.set_title(title)
    axes.grid(True, axis='y', alpha=0.3)
    _save(figure, path)


def plot_heatmaps(
    row_values: Sequence[Any],
    col_values: Sequence[Any],
    grids: Sequence[Sequence[Sequence[float]]],
    path: str,
    row_label: str = 'row',
    col_label: str = 'column',
    titles: Optional[Sequence[str]] = None,
    selected: Optional[tuple] = None,
    suptitle: Optional[str] = None,
) -> None:
    r"""Heat maps of one value per cell of a 2-D grid (one panel per
    matrix of :obj:`grids`, e.g. validation Recall@20 and NDCG@20), each
    cell annotated with its value and the :obj:`selected` cell framed.

    Args:
        row_values (Sequence): The values of the first setting (rows, top
            to bottom).
        col_values (Sequence): The values of the second setting (columns).
        grids (Sequence): One :obj:`[rows][columns]` matrix per panel
            (:obj:`nan` for a missing cell, drawn blank).
        path (str): The PNG file to write.
        row_label (str, optional): The y axis label. (default: :obj:`'row'`)
        col_label (str, optional): The x axis label.
            (default: :obj:`'column'`)
        titles (Sequence[str], optional): One title per panel.
            (default: :obj:`None`)
        selected (tuple, optional): :obj:`(row, column)` of the selected
            cell. (default: :obj:`None`, no frame)
        suptitle (str, optional): A title over the panels.
            (default: :obj:`None`)
    """
    import numpy as np

    matrices = [np.asarray(g, dtype=float) for g in grids]
    shape = (len(row_values), len(col_values))
    if not matrices or any(m.shape != shape for m in matrices):
        raise ValueError(f'{path}: every heat map needs {shape[0]} x {shape[1]} values')
    width = max(3.2, 0.9 * shape[1] + 2.2)
    figure = _figure(width * len(matrices), max(2.8, 0.6 * shape[0] + 1.8))
    panels = figure.subplots(1, len(matrices), squeeze=False)[0]
    from matplotlib.patches import Rectangle
    for index, (axes, matrix) in enumerate(zip(panels, matrices, strict=True)):
        image = axes.imshow(np.ma.masked_invalid(matrix), cmap='viridis', aspect='auto')
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        finite = matrix[np.isfinite(matrix)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for r in range(shape[0]):
            for c in range(shape[1]):
                if np.isfinite(matrix[r, c]):
                    axes.text(c, r, f'{matrix[r, c]:.4f}', ha='center', va='center',
                              fontsize=8, color='black' if matrix[r, c] > middle else 'white')
        if selected is not None:
            axes.add_patch(Rectangle((selected[1] - 0.5, selected[0] - 0.5), 1, 1,
                                     fill=False, edgecolor='tab:red', linewidth=2.5))
        axes.set_xticks(range(shape[1]), [str(v) for v in col_values])
        axes.set_yticks(range(shape[0]), [str(v) for v in row_values])
        axes.set_xlabel(col_label)
        axes.set_ylabel(row_label)
        if titles is not None:
            axes.set_title(titles[index])
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    _save(figure, path)


def plot_sweep_line(
    values: Sequence[Any],
    curves: Sequence[Sequence[float]],
    path: str,
    xlabel: str = 'value',
    labels: Optional[Sequence[str]] = None,
    selected: Optional[int] = None,
    title: Optional[str] = None,
) -> None:
    r"""A line plot of a 1-D sweep: one curve per entry of :obj:`curves`
    (e.g. validation Recall@20 and NDCG@20) over the swept :obj:`values`
    (evenly spaced, labelled with the values), the :obj:`selected` point
    marked.

    Args:
        values (Sequence): The swept setting's values.
        curves (Sequence): One sequence of :obj:`len(values)` numbers per
            curve.
        path (str): The PNG file to write.
        xlabel (str, optional): The x axis label. (default: :obj:`'value'`)
        labels (Sequence[str], optional): The curves' legend entries.
            (default: :obj:`None`)
        selected (int, optional): The index of the selected value.
            (default: :obj:`None`, no mark)
        title (str, optional): The title. (default: :obj:`None`)
    """
    if not curves or any(len(c) != len(values) for c in curves):
        raise ValueError(f'{path}: every curve needs one value per swept value '
                         f'({len(values)})')
    figure = _figure()
    axes = figure.subplots()
    positions = list(range(len(values)))
    for index, curve in enumerate(curves):
        axes.plot(positions, list(curve), marker='o',
                  label=labels[index] if labels is not None else None)
        if selected is not None:
            axes.plot([selected], [curve[selected]], marker='o', markersize=11,
                      markerfacecolor='none', markeredgecolor='tab:red', linestyle='none')
    if selected is not None:
        axes.axvline(selected, color='tab:red', linestyle='--', linewidth=1.0,
                     label=f'selected: {values[selected]}')
    axes.set_xticks(positions, [str(v) for v in values])
    axes.set_xlabel(xlabel)
    axes.set_ylabel('validation')
    if labels is not None or selected is not None:
        axes.legend(loc='best', frameon=False)
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    _save(figure, path)
