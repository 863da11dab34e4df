r"""Named access to the interaction edges of a recommendation
:class:`~torch_geometric.data.HeteroData`, with the leak guard.

Every stage that *learns* from interactions (the Jaccard co-occurrence graph,
the preference prompts, negative sampling, the user-item propagation graph)
must obtain them through :func:`train_edge_index`, which returns only the
edges whose ``train_mask`` is set.  Validation and test edges cannot reach it.
The one exception, the reference's leaky protocol reproduced to measure the
leak, goes through :func:`history_edge_index` and warns loudly.

:func:`split_fingerprint` names the training edges of a split, so that an
artefact built from them (a :obj:`preferences.tsv`) can be refused on
another split (:func:`check_split_fingerprint`).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from typing import List, Literal, Optional, Tuple, Type, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

#: The user -> item interaction relation of every dataset in this package.
INTERACTS: Tuple[str, str, str] = ('user', 'interacts', 'item')
#: Its reverse, named as :class:`torch_geometric.transforms.ToUndirected` does.
REV_INTERACTS: Tuple[str, str, str] = ('item', 'rev_interacts', 'user')

Split = Literal['train', 'val', 'test', 'all']
_MASKS = {'train': 'train_mask', 'val': 'val_mask', 'test': 'test_mask'}


def split_mask(data: HeteroData, split: Split) -> Tensor:
    r"""Returns the boolean mask over :obj:`('user', 'interacts', 'item')`
    edges that selects :obj:`split` (:obj:`"train"`, :obj:`"val"`,
    :obj:`"test"` or :obj:`"all"`)."""
    store = data[INTERACTS]
    if split == 'all':
        return torch.ones(store.edge_index.size(1), dtype=torch.bool,
                          device=store.edge_index.device)
    if split not in _MASKS:
        raise ValueError(f"Unknown split '{split}' (expected one of "
                         f"'train', 'val', 'test', 'all')")
    mask = getattr(store, _MASKS[split], None)
    if mask is None:
        raise ValueError(f"The interaction edges carry no '{_MASKS[split]}': "
                         f"the dataset was built without a split")
    return mask


def split_edge_index(data: HeteroData, split: Split) -> Tensor:
    r"""Returns the :obj:`[2, E_split]` user -> item edges of :obj:`split`
    (row 0: user index, row 1: item index)."""
    return data[INTERACTS].edge_index[:, split_mask(data, split)]


def train_edge_index(data: HeteroData) -> Tensor:
    r"""Returns the TRAINING user -> item interactions only, as a
    :obj:`[2, E_train]` tensor (row 0: user index, row 1: item index).

    This is the single accessor through which anything that learns from
    interactions must read them: no validation or test edge is returned.
    """
    return split_edge_index(data, 'train')


def edge_time(data: HeteroData, split: Split = 'all') -> Union[Tensor, None]:
    r"""Returns the per-edge timestamps of :obj:`split`, or :obj:`None` when
    the dataset has none."""
    time = getattr(data[INTERACTS], 'time', None)
    if time is None:
        return None
    return time[split_mask(data, split)]


#: Which interactions a user's history is read from: the TRAINING edges, or
#: ALL of them (the reference's protocol, validation and test included:
#: LEAKED).
HistorySource = Literal['train', 'full_history']


class FullHistoryLeakWarning(UserWarning):
    r"""Something is being built from the FULL history (validation and test
    items included): every metric computed with it is leaked."""


def history_edge_index(data: HeteroData, source: HistorySource,
                       what: str = 'the user histories',
                       category: Type[Warning] = FullHistoryLeakWarning,
                       ) -> Tuple[Tensor, Optional[Tensor]]:
    r"""Returns the user -> item edges a user's history is read from, and
    their per-edge timestamps (:obj:`None` when the dataset has none).

    .. math::
        \mathcal{E}_{\mathrm{source}} = \begin{cases}
        \mathcal{E}_{\mathrm{train}} & \text{source} = \text{train} \\
        \mathcal{E}_{\mathrm{train}} \cup \mathcal{E}_{\mathrm{val}} \cup
        \mathcal{E}_{\mathrm{test}} & \text{source} = \text{full\_history}
        \end{cases}

    :obj:`source="full_history"` returns every edge, validation and test
    included: whatever is built from them has seen the items a model is
    scored on.  It exists only to measure that leak and warns loudly
    (:class:`FullHistoryLeakWarning`, naming :obj:`what`).

    Args:
        data (HeteroData): The dataset (with a split).
        source (str): :obj:`"train"`, or the LEAKY :obj:`"full_history"`.
        what (str, optional): What is built from the edges, for the warning
            and errors. (default: :obj:`"the user histories"`)
        category (Type[Warning], optional): The warning's class, a
            subclass of :class:`FullHistoryLeakWarning`.
            (default: :class:`FullHistoryLeakWarning`)

    Raises:
        ValueError: If :obj:`source` is neither.
    """
    if source == 'train':
        return train_edge_index(data), edge_time(data, 'train')
    if source == 'full_history':
        warnings.warn(
            f"source='full_history': {what} are built from ALL interactions, "
            'validation and test items included. Every metric computed with '
            'them is LEAKED; use it only to measure the leak.',
            category, stacklevel=3)
        return split_edge_index(data, 'all'), edge_time(data, 'all')
    raise ValueError(f"Unknown source '{source}' for {what} (expected "
                     "'train' or 'full_history')")


def _raw_ids(data: HeteroData, node_type: str) -> List[str]:
    store = data[node_type]
    raw = getattr(store, 'raw_id', None)
    if raw is None:
        return [str(i) for i in range(int(store.num_nodes))]
    return [str(r) for r in raw]


def split_fingerprint(data: HeteroData) -> str:
    r"""Returns a fingerprint of the dataset's TRAINING edges, e.g.
    :obj:`"split=mmrec;seed=2024;train=3f0c9a1d2b4e5f60"`.

    The split rule and seed are read from :obj:`data.report` (see
    :func:`mllmrec_pyg.data.build.build_hetero_data`; :obj:`"unknown"`
    without one); :obj:`train` is the first 16 hex digits of the SHA-256 of
    the user and item counts and the sorted, unique (user raw id, item raw
    id) training pairs.  The same split of the same data gives the same
    value whatever the processing (node order, duplicated edges); any change
    of the training edge set changes it.

    Args:
        data (HeteroData): The dataset (with a split).
    """
    report = getattr(data, 'report', None) or {}
    users, items = _raw_ids(data, 'user'), _raw_ids(data, 'item')
    edge_index = train_edge_index(data)
    pairs = sorted({(users[u], items[i]) for u, i in
                    zip(edge_index[0].tolist(), edge_index[1].tolist(),
                        strict=True)})
    digest = hashlib.sha256(f'users={len(users)};items={len(items)}\n'
                            .encode())
    for pair in pairs:
        digest.update(json.dumps(pair, ensure_ascii=False).encode())
        digest.update(b'\n')
    parts = [f"split={report.get('split', 'unknown')}"]
    if report.get('seed') is not None:
        parts.append(f"seed={report['seed']}")
    parts.append(f'train={digest.hexdigest()[:16]}')
    return ';'.join(parts)


def check_split_fingerprint(found: Optional[str], data: HeteroData,
                            path: str) -> None:
    r"""Checks that an artefact read from :obj:`path` was built on the split
    of :obj:`data` (its recorded :func:`split_fingerprint` :obj:`found`).

    Args:
        found (str, optional): The fingerprint the file records
            (:obj:`None` or :obj:`""` when it records none).
        data (HeteroData): The dataset it is used with.
        path (str): The file, named in the error.

    Raises:
        ValueError: If :obj:`found` is missing or differs.
    """
    expected = split_fingerprint(data)
    if found == expected:
        return
    rebuild = ('rebuild it on this dataset and split with `mllmrec prefer '
               'DATASET_PATH --out DIR` (finished users come from the cache)')
    if not found:
        raise ValueError(f'{path} records no split_fingerprint (written by an '
                         'older version or by hand), so it may have been built '
                         "on another split; this dataset's is "
                         f"'{expected}': {rebuild}")
    raise ValueError(f"{path} was built on another split (split_fingerprint "
                     f"'{found}', this dataset's '{expected}'), so it may "
                     f'have seen its validation and test items: {rebuild}')
