r"""The user representations of finished runs side by side: a t-SNE map of
the same users per run, with the alignment and uniformity of Wang et al.
(`"Towards Representation Alignment and Uniformity in Collaborative
Filtering" <https://arxiv.org/abs/2206.12811>`_, KDD 2022) that the
evaluate stage recorded in each run's ``metrics.json``
(:func:`~mllmrec_pyg.metrics.representation_summary`).

.. code-block:: python

    from mllmrec_pyg.experiment.embeddings import embedding_table, plot_user_tsne

    runs = ['runs/lightgcn', 'runs/mllmrec-stand-in', 'runs/mllmrec-llm']
    plot_user_tsne(runs, 'runs/embed_plot.png', split='test')
    print(embedding_table(runs))

Everything is read from the run folders (``representations.pt``,
``metrics.json``, ``per_user_<split>.npz``); the runs must share a dataset
and split (as for :func:`~mllmrec_pyg.experiment.compare.compare_runs`), so
that the same users are drawn in every panel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from .compare import RunSummary, check_comparable, read_run

#: The width and height of one panel, in inches.
PANEL_SIZE = (4.0, 4.0)

#: The file of a run's final representations (written by the evaluate
#: stage).
REPRESENTATIONS_FILE = 'representations.pt'

_SPLITS = ('test', 'val')


@dataclass
class RunRepresentations:
    r"""What the plot and the table read of one run folder.

    Attributes:
        run (RunSummary): The run (see
            :func:`~mllmrec_pyg.experiment.compare.read_run`).
        split (str): The split read.
        users (torch.Tensor): :obj:`[N]` the users evaluated on the split.
        user (torch.Tensor): :obj:`[num_users, d]` the final user
            representations.
        user_num_train (torch.Tensor, optional): :obj:`[num_users]` each
            user's number of training interactions (:obj:`None` when the
            run did not record them).
        representation (Dict[str, Any]): The split's alignment and
            uniformity from ``metrics.json`` (empty when absent).
        recall (float, optional): The split's Recall@20.
    """
    run: RunSummary
    split: str
    users: Tensor
    user: Tensor = field(repr=False)
    user_num_train: Optional[Tensor] = field(repr=False)
    representation: Dict[str, Any]
    recall: Optional[float]


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"--split {split}: not a split; use 'test' or 'val'")


def read_representations(run_dir: str, split: str = 'test') -> RunRepresentations:
    r"""Reads a run folder's ``representations.pt``, ``metrics.json`` and
    ``per_user_<split>.npz``; a missing or unreadable file is a one-line
    error naming it and the fix.

    Args:
        run_dir (str): The ``--out`` folder of ``mllmrec train`` or
            ``mllmrec run``.
        split (str, optional): :obj:`'test'` or :obj:`'val'`.
            (default: :obj:`'test'`)
    """
    from mllmrec_pyg.metrics import EvaluationResult

    from .report import read_run_metrics
    from .store import UnreadableStageFile, load_stage_file

    _check_split(split)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f'{run_dir}: not a folder; RUN_DIR must be the --out folder '
                                'of `mllmrec train` or `mllmrec run`')
    run = read_run(run_dir)
    path = os.path.join(run_dir, REPRESENTATIONS_FILE)
    if not os.path.exists(path):
        raise ValueError(f'{path}: not found (the run predates it); rerun the run with '
                         '--force evaluate to write it')
    try:
        saved = load_stage_file(path)
        user = saved['user']
        if not isinstance(user, Tensor) or user.dim() != 2:
            raise TypeError('no [num_users, d] user tensor')
    except (UnreadableStageFile, KeyError, TypeError):
        raise ValueError(f'{path}: not a readable representations file (corrupt or '
                         'truncated); rerun the run with --force evaluate') from None
    if split == 'test':
        result = run.per_user_test
    else:
        result = EvaluationResult.load(os.path.join(run_dir, 'per_user_val.npz'))
    metrics = read_run_metrics(run_dir)
    block = (metrics.get('representation') or {}).get(split) or {}
    recall = (metrics.get(split) or {}).get('recall@20')
    num_train = saved.get('user_num_train')
    return RunRepresentations(
        run=run, split=split, users=result.users.long(), user=user.float(),
        user_num_train=num_train if isinstance(num_train, Tensor) else None,
        representation=dict(block),
        recall=float(recall) if isinstance(recall, (int, float)) else None)


def read_runs(run_dirs: Sequence[str], split: str = 'test') -> List[RunRepresentations]:
    r"""Reads every run of :obj:`run_dirs` (see :func:`read_representations`)
    and refuses, in one line naming both, runs whose users cannot be
    matched (another dataset or split)."""
    _check_split(split)
    if not run_dirs:
        raise ValueError('no run to plot: give one or more RUN_DIRs')
    runs = [read_representations(d, split) for d in run_dirs]
    for other in runs[1:]:
        check_comparable(runs[0].run, other.run)
        if other.user.size(0) != runs[0].user.size(0):
            raise ValueError(f'cannot plot {runs[0].run.path} and {other.run.path} '
                             f'together: {runs[0].user.size(0)} vs {other.user.size(0)} '
                             'users; plot runs of one dataset and split')
    return runs


def sample_users(runs: Sequence[RunRepresentations], max_users: int = 2000,
                 seed: int = 0) -> Tensor:
    r"""The users drawn in every panel: those every run evaluated on the
    split, at most :obj:`max_users` of them drawn uniformly by a generator
    seeded with :obj:`seed`, in increasing order.

    Args:
        runs (Sequence[RunRepresentations]): The runs.
        max_users (int, optional): The most users drawn. (default: :obj:`2000`)
        seed (int, optional): The seed of the sample. (default: :obj:`0`)
    """
    if max_users < 1:
        raise ValueError(f'--max-users {max_users}: must be positive')
    users = runs[0].users
    for other in runs[1:]:
        users = users[torch.isin(users, other.users)]
    users = torch.unique(users)
    if users.numel() > max_users:
        generator = torch.Generator().manual_seed(seed)
        users = torch.sort(users[torch.randperm(users.numel(), generator=generator)
                                 [:max_users]]).values
    return users


def tsne_coordinates(user: Tensor, perplexity: float = 30.0, seed: int = 0) -> Tensor:
    r"""The 2-D t-SNE map (:class:`sklearn.manifold.TSNE`, PCA
    initialisation) of the :math:`\ell_2`-normalised rows of :obj:`user`.

    Args:
        user (torch.Tensor): :obj:`[N, d]` representations.
        perplexity (float, optional): t-SNE's perplexity, below :math:`N`.
            (default: :obj:`30.0`)
        seed (int, optional): t-SNE's :obj:`random_state`. (default: :obj:`0`)
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:  # scikit-learn is a dependency; a broken install
        raise ImportError('the t-SNE plot needs scikit-learn: pip install scikit-learn'
                          ) from exc
    if perplexity <= 0 or perplexity >= user.size(0):
        raise ValueError(f'--perplexity {perplexity:g}: must lie in (0, {user.size(0)}), '
                         f'below the {user.size(0)} users plotted; lower it')
    points = torch.nn.functional.normalize(user.double(), dim=-1).numpy()
    tsne = TSNE(n_components=2, perplexity=float(perplexity), init='pca',
                random_state=seed)
    return torch.from_numpy(tsne.fit_transform(points))


def _number(value: Any) -> str:
    return f'{float(value):.4f}' if isinstance(value, (int, float)) else '-'


def _names(runs: Sequence[RunRepresentations]) -> List[str]:
    plain = [r.run.name for r in runs]
    return [r.run.path if plain.count(r.run.name) > 1 else r.run.name for r in runs]


def plot_user_tsne(run_dirs: Sequence[str], out_png: str, split: str = 'test',
                   max_users: int = 2000, perplexity: float = 30.0,
                   seed: int = 0) -> List[RunRepresentations]:
    r"""Draws the t-SNE map of the same sample of users for each run, one
    panel per run side by side (each :obj:`PANEL_SIZE` inches, so the PNG is
    :math:`400 \cdot \text{runs}` pixels wide), titled with the run's model
    and the split's alignment and uniformity, the points coloured by the
    user's number of training interactions (log scale), and writes it as a
    PNG.  Returns the runs read.

    Args:
        run_dirs (Sequence[str]): The run folders (one dataset and split).
        out_png (str): The PNG file to write.
        split (str, optional): The users evaluated on :obj:`'test'` or
            :obj:`'val'`. (default: :obj:`'test'`)
        max_users (int, optional): The most users drawn (see
            :func:`sample_users`). (default: :obj:`2000`)
        perplexity (float, optional): t-SNE's perplexity, below the number
            of users drawn. (default: :obj:`30.0`)
        seed (int, optional): The seed of the sample of users and of t-SNE.
            (default: :obj:`0`)
    """
    from matplotlib.colors import LogNorm

    from .plots import _figure, _save

    runs = read_runs(run_dirs, split)
    users = sample_users(runs, max_users, seed)
    if users.numel() < 2:
        raise ValueError(f'{runs[0].run.path}: {users.numel()} users evaluated on {split} '
                         'in every run; a t-SNE map needs at least two')
    maps = [tsne_coordinates(r.user[users], perplexity, seed) for r in runs]
    counts = [r.user_num_train[users].clamp(min=1).double()
              if r.user_num_train is not None else None for r in runs]
    known = [c for c in counts if c is not None]
    norm = (LogNorm(vmin=float(min(c.min() for c in known)),
                    vmax=max(float(max(c.max() for c in known)), 2.0)) if known else None)
    width, height = PANEL_SIZE
    figure = _figure(width * len(runs), height)
    panels = figure.subplots(1, len(runs), squeeze=False)[0]
    for axes, run, name, xy, count in zip(panels, runs, _names(runs), maps, counts,
                                          strict=True):
        if count is None:
            axes.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=6, color='tab:blue',
                         linewidths=0)
        else:
            points = axes.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=6,
                                  c=count.numpy(), cmap='viridis', norm=norm,
                                  linewidths=0)
            figure.colorbar(points, ax=axes, label='training interactions',
                            fraction=0.05, pad=0.02)
        block = run.representation
        axes.set_title(f'{name} ({run.run.model})\nalign {_number(block.get("alignment"))}'
                       f', unif {_number(block.get("uniformity_user"))} (users)',
                       fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f't-SNE of {users.numel()} {split} users (L2-normalised)',
                    fontsize=10)
    _save(figure, out_png)
    return runs


def embedding_table(run_dirs: Sequence[str], split: str = 'test',
                    runs: Optional[Sequence[RunRepresentations]] = None) -> str:
    r"""The Markdown table of the runs' Recall@20, alignment and uniformity
    (users, items and their mean) on :obj:`split` (4 decimals; ``-`` for a
    number a run did not record).

    Args:
        run_dirs (Sequence[str]): The run folders.
        split (str, optional): :obj:`'test'` or :obj:`'val'`.
            (default: :obj:`'test'`)
        runs (Sequence[RunRepresentations], optional): The runs already read
            from :obj:`run_dirs`. (default: :obj:`None`, read them)
    """
    runs = list(runs) if runs is not None else read_runs(run_dirs, split)
    header = ['run', 'model', f'{split} R@20', 'alignment', 'uniformity (users)',
              'uniformity (items)', 'uniformity']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for name, run in zip(_names(runs), runs, strict=True):
        block = run.representation
        lines.append('| ' + ' | '.join([
            name, run.run.model, _number(run.recall), _number(block.get('alignment')),
            _number(block.get('uniformity_user')), _number(block.get('uniformity_item')),
            _number(block.get('uniformity'))]) + ' |')
    lines += ['', f'{split.capitalize()} split; alignment and uniformity of Wang et al. '
              '(KDD 2022) on the L2-normalised final representations, over the '
              "split's positive pairs and their users and items (lower is better for "
              'both).']
    return '\n'.join(lines) + '\n'


def output_paths(prefix: str) -> List[str]:
    r"""The Markdown and PNG files written to :obj:`prefix` (a trailing
    ``.md`` or ``.png`` is dropped), with their folder created; a folder
    given as :obj:`prefix`, or a place that cannot be written, is a
    one-line :class:`ValueError` naming ``--out``.

    Args:
        prefix (str): The files' path without extension, e.g.
            :obj:`'runs/embed_plot'`.
    """
    from .store import make_out_dir

    root, ext = os.path.splitext(prefix)
    if ext.lower() in ('.md', '.png'):
        prefix = root
    if not os.path.basename(prefix) or os.path.isdir(prefix):
        raise ValueError(f'--out {prefix}: is a folder; give a file prefix, e.g. '
                         f'{os.path.join(prefix, "embed_plot")}')
    make_out_dir(os.path.dirname(os.path.abspath(prefix)), '--out')
    return [f'{prefix}.md', f'{prefix}.png']


def write_embedding_plot(run_dirs: Sequence[str], prefix: str, split: str = 'test',
                         max_users: int = 2000, perplexity: float = 30.0,
                         seed: int = 0) -> List[str]:
    r"""Writes :obj:`prefix`.png (:func:`plot_user_tsne`) and :obj:`prefix`.md
    (:func:`embedding_table` and the image) and returns their paths, the
    Markdown file first.  The arguments are those of
    :func:`plot_user_tsne`; :obj:`prefix` is checked by
    :func:`output_paths`."""
    from mllmrec_pyg.utils.paths import replace_file

    md, png = output_paths(prefix)
    runs = plot_user_tsne(run_dirs, png, split=split, max_users=max_users,
                          perplexity=perplexity, seed=seed)
    table = embedding_table(run_dirs, split, runs=runs)

    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(table)
            f.write(f'\n![t-SNE of the {split} users per run]({os.path.basename(png)})\n')

    replace_file(md, write)
    return [md, png]
