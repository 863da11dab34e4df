r"""Assembles the :class:`~torch_geometric.data.HeteroData` of a dataset from
what a reader found: deduplication, k-core filtering, the split, id maps,
item side information and the reverse relation."""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from .interactions import INTERACTS
from .readers import DEFAULT_TEXT_FIELDS, IMAGE_COLUMNS, RawDataset
from .split import (
    global_temporal_split,
    k_core,
    mmrec_split,
    user_temporal_split,
)

log = logging.getLogger(__name__)

#: Split methods: ``'given'`` keeps the file's ``x_label`` column; ``'auto'``
#: is ``'given'`` when the file has one, else ``'mmrec'``.
SPLITS = ('auto', 'given', 'mmrec', 'user_temporal', 'global_temporal')


def _index(values: pd.Series, integer_ids: bool) -> Tuple[np.ndarray, List[str]]:
    r"""Maps raw ids to node indices.  MMRec ids are 0-based integers and map
    to themselves (so row ``i`` of a feature file is item ``i``); other ids
    are sorted (numerically when all are integers) and numbered."""
    if integer_ids:
        idx = values.to_numpy().astype(np.int64)
        count = int(idx.max()) + 1 if idx.size else 0
        return idx, [str(i) for i in range(count)]
    uniques = pd.unique(values.astype(str))
    as_int = pd.to_numeric(pd.Series(uniques), errors='coerce')
    if not as_int.isna().any() and (as_int % 1 == 0).all():
        uniques = uniques[np.argsort(as_int.to_numpy(), kind='stable')]
    else:
        uniques = np.sort(uniques)
    lookup = pd.Index(uniques)
    return lookup.get_indexer(values.astype(str)), [str(u) for u in uniques]


def _side_columns(table: pd.DataFrame, raw_ids: List[str], columns: Sequence[str]
                  ) -> Dict[str, List[str]]:
    r"""Returns the :obj:`columns` of :obj:`table` as lists of strings aligned
    to :obj:`raw_ids` (``''`` where a node has no row)."""
    aligned = table.reindex(raw_ids)
    return {col: aligned[col].fillna('').astype(str).tolist() for col in columns}


def drop_duplicate_pairs(inter: pd.DataFrame, source: str = ''
                         ) -> Tuple[pd.DataFrame, int]:
    r"""Removes repeated :obj:`(user, item)` pairs from the interactions
    :obj:`inter`, keeping the first occurrence of each, and warns naming the
    line of the first repeat.

    Returns the remaining interactions and the number removed.

    Args:
        inter (pandas.DataFrame): Interactions with :obj:`user`, :obj:`item`
            and :obj:`line` columns.
        source (str, optional): The file named in the warning.
            (default: :obj:`''`)
    """
    dup = inter.duplicated(['user', 'item'], keep='first').to_numpy()
    count = int(dup.sum())
    if count:
        first = int(inter['line'].to_numpy()[dup][0])
        warnings.warn(f'{source}: {count} duplicate user-item '
                      f'pair(s) removed (first at line {first}); the first '
                      'occurrence of each pair is kept', stacklevel=2)
        inter = inter[~dup]
    return inter, count


def filter_k_core(inter: pd.DataFrame, k: int, source: str = ''
                  ) -> Tuple[pd.DataFrame, int]:
    r"""Keeps the interactions of the :obj:`k`-core of :obj:`inter` (see
    :func:`~mllmrec_pyg.data.split.k_core`): every remaining user and item
    has at least :obj:`k` interactions.

    Returns the remaining interactions and the number removed.

    Args:
        inter (pandas.DataFrame): Interactions with :obj:`user` and
            :obj:`item` columns.
        k (int): The threshold; :obj:`1` or less keeps everything.
        source (str, optional): The file named when nothing is left.
            (default: :obj:`''`)
    """
    u_codes = pd.factorize(inter['user'])[0]
    i_codes = pd.factorize(inter['item'])[0]
    keep = k_core(u_codes, i_codes, k)
    removed = int((~keep).sum())
    inter = inter[keep]
    if len(inter) == 0:
        raise ValueError(f'{source}: the {k}-core filter removed every '
                         'interaction; lower k')
    return inter, removed


def index_nodes(inter: pd.DataFrame, integer_ids: bool = False,
                num_feature_rows: int = 0
                ) -> Tuple[np.ndarray, List[str], np.ndarray, List[str]]:
    r"""Maps the raw user and item ids of :obj:`inter` to node indices.

    With :obj:`integer_ids` (MMRec's 0-based ids) an id is its own index and
    the item nodes cover the :obj:`num_feature_rows` rows of the feature files
    too, so that row ``i`` stays item ``i``; otherwise ids are sorted
    (numerically when all are integers) and numbered from 0.

    Returns :obj:`(user, user_ids, item, item_ids)`: the per-interaction
    indices and the raw id of every node.

    Args:
        inter (pandas.DataFrame): Interactions with :obj:`user` and
            :obj:`item` columns.
        integer_ids (bool, optional): Whether ids are node indices.
            (default: :obj:`False`)
        num_feature_rows (int, optional): The most rows of an item feature
            file, used with :obj:`integer_ids`. (default: :obj:`0`)
    """
    user, user_ids = _index(inter['user'], integer_ids)
    item, item_ids = _index(inter['item'], integer_ids)
    if integer_ids and num_feature_rows > len(item_ids):
        item_ids = [str(i) for i in range(num_feature_rows)]
    return user, user_ids, item, item_ids


def split_labels(
    inter: pd.DataFrame,
    user: np.ndarray,
    split: str = 'auto',
    seed: int = 2024,
    temporal_ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1),
    source: str = '',
) -> Tuple[np.ndarray, str]:
    r"""Labels every interaction 0, 1 or 2 (train / valid / test) with the
    split method :obj:`split` (one of :obj:`SPLITS`).

    Returns the labels and the method used (:obj:`'auto'` resolved to
    :obj:`'given'` when :obj:`inter` has a :obj:`label` column, else
    :obj:`'mmrec'`).

    Args:
        inter (pandas.DataFrame): Interactions, with :obj:`label` for the
            :obj:`'given'` split and :obj:`time` for the temporal ones.
        user (numpy.ndarray): The user index of every interaction.
        split (str, optional): One of :obj:`SPLITS`. (default: :obj:`'auto'`)
        seed (int, optional): Seed of the :obj:`'mmrec'` split.
            (default: :obj:`2024`)
        temporal_ratios (Tuple[float, float, float], optional): Train/valid/test
            fractions of the global temporal split. (default: :obj:`(0.8, 0.1,
            0.1)`)
        source (str, optional): The file named in errors. (default: :obj:`''`)
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split '{split}' (expected one of {SPLITS})")
    has_labels = 'label' in inter.columns
    method = ('given' if has_labels else 'mmrec') if split == 'auto' else split
    if method == 'given':
        if not has_labels:
            raise ValueError(f"{source}: split='given' needs an 'x_label' "
                             "column; use split='mmrec' to draw one")
        return inter['label'].to_numpy().astype(np.int8), method
    if method == 'mmrec':
        return mmrec_split(user, seed=seed), method
    if 'time' not in inter.columns:
        raise ValueError(f"{source}: split='{method}' needs timestamps "
                         "(a 'timestamp' column)")
    time_ = inter['time'].to_numpy()
    label = (user_temporal_split(user, time_) if method == 'user_temporal'
             else global_temporal_split(time_, temporal_ratios))
    return label, method


def find_cold_start(user: np.ndarray, label: np.ndarray, num_users: int,
                    source: str = '') -> Tuple[np.ndarray, int]:
    r"""Finds the users with interactions but none in training (label 0),
    and warns when there are any.

    Returns the :obj:`has_train` mask over the :obj:`num_users` users and the
    number of cold-start users.

    Args:
        user (numpy.ndarray): The user index of every interaction.
        label (numpy.ndarray): The split label of every interaction.
        num_users (int): The number of users.
        source (str, optional): The file named in the warning.
            (default: :obj:`''`)
    """
    n_train = np.bincount(user[label == 0], minlength=num_users)
    n_all = np.bincount(user, minlength=num_users)
    count = int(((n_train == 0) & (n_all > 0)).sum())
    if count:
        warnings.warn(f'{source}: {count} user(s) have no '
                      'training interaction after the split; they are dropped '
                      "from evaluation (MMRec's filter_out_cod_start_users)",
                      stacklevel=2)
    return n_train > 0, count


def add_nodes(data: HeteroData, user_ids: List[str], item_ids: List[str],
              has_train: np.ndarray) -> None:
    r"""Adds the :obj:`'user'` and :obj:`'item'` node stores to :obj:`data`:
    :obj:`num_nodes` and :obj:`raw_id` on both, :obj:`has_train` on users.

    Args:
        data (HeteroData): The graph, modified in place.
        user_ids (List[str]): The raw id of every user.
        item_ids (List[str]): The raw id of every item.
        has_train (numpy.ndarray): Whether each user has a training
            interaction.
    """
    data['user'].num_nodes = len(user_ids)
    data['user'].raw_id = user_ids
    data['user'].has_train = torch.from_numpy(has_train)
    data['item'].num_nodes = len(item_ids)
    data['item'].raw_id = item_ids


def add_interactions(data: HeteroData, user: np.ndarray, item: np.ndarray,
                     label: np.ndarray, inter: pd.DataFrame) -> None:
    r"""Adds the :obj:`('user', 'interacts', 'item')` edges to :obj:`data`,
    with :obj:`train_mask` / :obj:`val_mask` / :obj:`test_mask` from
    :obj:`label` and, where :obj:`inter` has them, :obj:`time` (float64) and
    :obj:`rating` (float32).

    Args:
        data (HeteroData): The graph, modified in place.
        user (numpy.ndarray): The user index of every interaction.
        item (numpy.ndarray): The item index of every interaction.
        label (numpy.ndarray): The split label (0/1/2) of every interaction.
        inter (pandas.DataFrame): The interactions, in the same order.
    """
    store = data[INTERACTS]
    store.edge_index = torch.from_numpy(np.stack([user, item]).astype(np.int64))
    label_t = torch.from_numpy(label.astype(np.int64))
    store.train_mask = label_t == 0
    store.val_mask = label_t == 1
    store.test_mask = label_t == 2
    if 'time' in inter.columns:
        store.time = torch.from_numpy(inter['time'].to_numpy().astype(np.float64))
    if 'rating' in inter.columns:
        store.rating = torch.from_numpy(
            inter['rating'].to_numpy().astype(np.float32))


def resolve_images(values: Sequence[str], root: str) -> List[Optional[str]]:
    r"""Turns the image cells of an item side table into locations:
    :obj:`None` for an empty cell, URLs and absolute paths as they are, and
    relative paths joined to :obj:`root`.

    Args:
        values (Sequence[str]): The image cells, one per item.
        root (str): The dataset folder.
    """
    images: List[Optional[str]] = []
    for v in values:
        v = v.strip()
        if not v:
            images.append(None)
        elif '://' in v or os.path.isabs(v):
            images.append(v)
        else:
            images.append(os.path.normpath(os.path.join(root, v)))
    return images


def add_item_side(data: HeteroData, table: Optional[pd.DataFrame],
                  item_ids: List[str],
                  text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
                  root: str = '') -> Dict[str, int]:
    r"""Adds the item side table :obj:`table` to :obj:`data['item']`: the
    :obj:`text_fields` columns it has as :obj:`text`, its first image column
    (:obj:`IMAGE_COLUMNS`) as :obj:`image` (see :func:`resolve_images`) and
    every other column as :obj:`meta`, each a dict of per-item lists.

    Returns the report entries :obj:`items_with_text` and, with an image
    column, :obj:`items_with_image`.

    Args:
        data (HeteroData): The graph, modified in place.
        table (pandas.DataFrame, optional): The item table, indexed by raw id.
        item_ids (List[str]): The raw id of every item.
        text_fields (Sequence[str], optional): Columns kept as text, in this
            order. (default: :obj:`DEFAULT_TEXT_FIELDS`)
        root (str, optional): The folder relative image paths are in.
            (default: :obj:`''`)
    """
    if table is None:
        return {'items_with_text': 0}
    text_cols = [c for c in text_fields if c in table.columns]
    image_cols = [c for c in IMAGE_COLUMNS if c in table.columns]
    meta_cols = [c for c in table.columns
                 if c not in text_cols and c not in image_cols]
    report = {'items_with_text': 0}
    if text_cols:
        text = _side_columns(table, item_ids, text_cols)
        data['item'].text = text
        has_text = np.zeros(len(item_ids), dtype=bool)
        for values in text.values():
            has_text |= np.array([bool(v.strip()) for v in values])
        report['items_with_text'] = int(has_text.sum())
    if meta_cols:
        data['item'].meta = _side_columns(table, item_ids, meta_cols)
    if image_cols:
        values = _side_columns(table, item_ids, image_cols[:1])[image_cols[0]]
        images = resolve_images(values, root)
        data['item'].image = images
        report['items_with_image'] = sum(v is not None for v in images)
    return report


def add_user_side(data: HeteroData, table: Optional[pd.DataFrame],
                  user_ids: List[str]) -> None:
    r"""Adds every column of the user side table :obj:`table` (if any) to
    :obj:`data['user'].meta`, a dict of per-user lists.

    Args:
        data (HeteroData): The graph, modified in place.
        table (pandas.DataFrame, optional): The user table, indexed by raw id.
        user_ids (List[str]): The raw id of every user.
    """
    if table is not None:
        data['user'].meta = _side_columns(table, user_ids, list(table.columns))


def add_item_features(data: HeteroData, features: Dict[str, np.ndarray]
                      ) -> None:
    r"""Adds each modality feature matrix of :obj:`features` (row ``i`` =
    item ``i``) to :obj:`data['item']` under its name, as float32.

    Args:
        data (HeteroData): The graph, with its item nodes, modified in place.
        features (Dict[str, numpy.ndarray]): Feature matrices by name (e.g.
            :obj:`'image_feat'`), one row per item.
    """
    num_items = data['item'].num_nodes
    for name, feat in features.items():
        if len(feat) != num_items:
            raise ValueError(f'{name}.npy has {len(feat)} rows but the dataset '
                             f'has {num_items} items (row i must be item i)')
        data['item'][name] = torch.from_numpy(np.asarray(feat, dtype=np.float32))


def build_hetero_data(
    raw: RawDataset,
    split: str = 'auto',
    seed: int = 2024,
    k: int = 0,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    temporal_ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> HeteroData:
    r"""Builds the dataset's :class:`~torch_geometric.data.HeteroData`:
    :func:`drop_duplicate_pairs`, :func:`filter_k_core`, :func:`index_nodes`,
    :func:`split_labels`, :func:`find_cold_start`, :func:`add_nodes`,
    :func:`add_interactions`, :func:`add_item_side`, :func:`add_user_side`,
    :func:`add_item_features` and the reverse relation
    (:class:`~torch_geometric.transforms.ToUndirected`), with what each step
    found in :obj:`data.report`.

    Args:
        raw (RawDataset): What the reader found.
        split (str, optional): One of :obj:`SPLITS`. (default: :obj:`'auto'`)
        seed (int, optional): Seed of the random split. (default: :obj:`2024`)
        k (int, optional): k-core threshold applied to users and items before
            splitting; :obj:`0` disables it. (default: :obj:`0`)
        text_fields (Sequence[str], optional): Item side-table columns kept as
            text, in this order. (default: :obj:`DEFAULT_TEXT_FIELDS`)
        temporal_ratios (Tuple[float, float, float], optional): Train/valid/test
            fractions of the global temporal split. (default: :obj:`(0.8, 0.1,
            0.1)`)
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split '{split}' (expected one of {SPLITS})")
    report: Dict[str, Any] = {'source': os.path.basename(raw.source)}
    inter, report['duplicates'] = drop_duplicate_pairs(raw.inter, raw.source)
    if k > 1:
        inter, removed = filter_k_core(inter, k, raw.source)
        report.update(k_core=k, k_core_removed=removed)
    # After k-core filtering ids are no longer contiguous: renumber.
    rows = max((len(v) for v in raw.item_features.values()), default=0)
    user, user_ids, item, item_ids = index_nodes(
        inter, raw.integer_ids and k <= 1, rows)
    label, report['split'] = split_labels(inter, user, split, seed,
                                          temporal_ratios, raw.source)
    if report['split'] == 'mmrec':
        report['seed'] = seed
    has_train, report['cold_start_users'] = find_cold_start(
        user, label, len(user_ids), raw.source)

    data = HeteroData()
    add_nodes(data, user_ids, item_ids, has_train)
    add_interactions(data, user, item, label, inter)
    report.update(add_item_side(data, raw.item_table, item_ids, text_fields,
                                raw.root))
    add_user_side(data, raw.user_table, user_ids)
    add_item_features(data, raw.item_features)

    data = T.ToUndirected()(data)
    data.report = report
    return data
