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
    aligned = table.reindex(raw_ids)
    return {col: aligned[col].fillna('').astype(str).tolist() for col in columns}


def build_hetero_data(
    raw: RawDataset,
    split: str = 'auto',
    seed: int = 2024,
    k: int = 0,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    temporal_ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> HeteroData:
    r"""Builds the dataset's :class:`~torch_geometric.data.HeteroData`.

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
    inter = raw.inter
    report: Dict[str, Any] = {'source': os.path.basename(raw.source)}

    # Duplicate (user, item) pairs: keep the first occurrence, count the rest.
    dup = inter.duplicated(['user', 'item'], keep='first').to_numpy()
    report['duplicates'] = int(dup.sum())
    if dup.any():
        first = int(inter['line'].to_numpy()[dup][0])
        warnings.warn(f'{raw.source}: {int(dup.sum())} duplicate user-item '
                      f'pair(s) removed (first at line {first}); the first '
                      'occurrence of each pair is kept', stacklevel=2)
        inter = inter[~dup]

    if k > 1:
        u_codes = pd.factorize(inter['user'])[0]
        i_codes = pd.factorize(inter['item'])[0]
        keep = k_core(u_codes, i_codes, k)
        report['k_core'] = k
        report['k_core_removed'] = int((~keep).sum())
        inter = inter[keep]
        if len(inter) == 0:
            raise ValueError(f'{raw.source}: the {k}-core filter removed every '
                             'interaction; lower k')
    # After k-core filtering ids are no longer contiguous: renumber.
    integer_ids = raw.integer_ids and k <= 1
    user, user_ids = _index(inter['user'], integer_ids)
    item, item_ids = _index(inter['item'], integer_ids)
    if integer_ids and raw.item_features:
        rows = max(len(v) for v in raw.item_features.values())
        item_ids = [str(i) for i in range(max(len(item_ids), rows))]

    has_labels = 'label' in inter.columns
    method = ('given' if has_labels else 'mmrec') if split == 'auto' else split
    if method == 'given':
        if not has_labels:
            raise ValueError(f"{raw.source}: split='given' needs an 'x_label' "
                             "column; use split='mmrec' to draw one")
        label = inter['label'].to_numpy().astype(np.int8)
    elif method == 'mmrec':
        label = mmrec_split(user, seed=seed)
    else:
        if 'time' not in inter.columns:
            raise ValueError(f"{raw.source}: split='{method}' needs timestamps "
                             "(a 'timestamp' column)")
        time_ = inter['time'].to_numpy()
        label = (user_temporal_split(user, time_) if method == 'user_temporal'
                 else global_temporal_split(time_, temporal_ratios))
    report['split'] = method
    if method == 'mmrec':
        report['seed'] = seed

    num_users, num_items = len(user_ids), len(item_ids)
    n_train = np.bincount(user[label == 0], minlength=num_users)
    n_all = np.bincount(user, minlength=num_users)
    cold = (n_train == 0) & (n_all > 0)
    report['cold_start_users'] = int(cold.sum())
    if cold.any():
        warnings.warn(f'{raw.source}: {int(cold.sum())} user(s) have no '
                      'training interaction after the split; they are dropped '
                      "from evaluation (MMRec's filter_out_cod_start_users)",
                      stacklevel=2)

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['user'].raw_id = user_ids
    data['user'].has_train = torch.from_numpy(n_train > 0)
    data['item'].num_nodes = num_items
    data['item'].raw_id = item_ids

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

    _attach_item_side(data, raw, item_ids, text_fields, report)
    if raw.user_table is not None:
        cols = [c for c in raw.user_table.columns]
        data['user'].meta = _side_columns(raw.user_table, user_ids, cols)
    for name, feat in raw.item_features.items():
        if len(feat) != num_items:
            raise ValueError(f'{name}.npy has {len(feat)} rows but the dataset '
                             f'has {num_items} items (row i must be item i)')
        data['item'][name] = torch.from_numpy(np.asarray(feat, dtype=np.float32))

    data = T.ToUndirected()(data)
    data.report = report
    return data


def _attach_item_side(data: HeteroData, raw: RawDataset, item_ids: List[str],
                      text_fields: Sequence[str], report: Dict[str, Any]) -> None:
    table: Optional[pd.DataFrame] = raw.item_table
    if table is None:
        report['items_with_text'] = 0
        return
    text_cols = [c for c in text_fields if c in table.columns]
    image_cols = [c for c in IMAGE_COLUMNS if c in table.columns]
    meta_cols = [c for c in table.columns
                 if c not in text_cols and c not in image_cols]
    if text_cols:
        text = _side_columns(table, item_ids, text_cols)
        data['item'].text = text
        has_text = np.zeros(len(item_ids), dtype=bool)
        for values in text.values():
            has_text |= np.array([bool(v.strip()) for v in values])
        report['items_with_text'] = int(has_text.sum())
    else:
        report['items_with_text'] = 0
    if meta_cols:
        data['item'].meta = _side_columns(table, item_ids, meta_cols)
    if image_cols:
        values = _side_columns(table, item_ids, image_cols[:1])[image_cols[0]]
        images: List[Optional[str]] = []
        for v in values:
            v = v.strip()
            if not v:
                images.append(None)
            elif '://' in v or os.path.isabs(v):
                images.append(v)
            else:
                images.append(os.path.normpath(os.path.join(raw.root, v)))
        data['item'].image = images
        report['items_with_image'] = sum(v is not None for v in images)
