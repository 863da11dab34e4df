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


#: The names of the split labels 0, 1 and 2.
LABEL_NAMES = ('train', 'val', 'test')


def duplicate_label_conflicts(inter: pd.DataFrame) -> Dict[str, Any]:
    r"""Counts the repeated :obj:`(user, item)` pairs of :obj:`inter` whose
    occurrences carry different split labels, and the label that
    :func:`drop_duplicate_pairs` keeps for them (the first occurrence's).

    Returns :obj:`{'pairs': n, 'kept': {'train': a, 'test': b, ...}}` (only
    the labels kept at least once; :obj:`{'pairs': 0, 'kept': {}}` without
    a :obj:`label` column).

    Args:
        inter (pandas.DataFrame): Interactions with :obj:`user`, :obj:`item`
            and, for a given split, :obj:`label` columns.
    """
    if 'label' not in inter.columns:
        return {'pairs': 0, 'kept': {}}
    repeated = inter[inter.duplicated(['user', 'item'], keep=False)]
    if len(repeated) == 0:
        return {'pairs': 0, 'kept': {}}
    labels = repeated.groupby(['user', 'item'], sort=False)['label']
    conflicting = repeated[labels.transform('nunique').to_numpy() > 1]
    first = conflicting.drop_duplicates(['user', 'item'], keep='first')
    counts = first['label'].value_counts().sort_index()
    names = {i: name for i, name in enumerate(LABEL_NAMES)}
    return {'pairs': len(first),
            'kept': {names.get(label, f'label {label}'): int(n)
                     for label, n in counts.items()}}


def drop_duplicate_pairs(inter: pd.DataFrame, source: str = ''
                         ) -> Tuple[pd.DataFrame, int]:
    r"""Removes repeated :obj:`(user, item)` pairs from the interactions
    :obj:`inter`, keeping the first occurrence of each, and warns naming the
    line of the first repeat and, when the repeats carry other split labels
    than the kept occurrence, how many pairs did and which labels were kept
    (see :func:`duplicate_label_conflicts`).

    Returns the remaining interactions and the number removed.

    Args:
        inter (pandas.DataFrame): Interactions with :obj:`user`, :obj:`item`
            and :obj:`line` columns (and :obj:`label` for a given split).
        source (str, optional): The file named in the warning.
            (default: :obj:`''`)
    """
    dup = inter.duplicated(['user', 'item'], keep='first').to_numpy()
    count = int(dup.sum())
    if count:
        first = int(inter['line'].to_numpy()[dup][0])
        conflicts = duplicate_label_conflicts(inter)
        if conflicts['pairs']:
            kept = ', '.join(f'{n} {name}'
                             for name, n in conflicts['kept'].items())
            what = (f"{conflicts['pairs']} had conflicting split labels "
                    f'(kept the first: {kept})')
        else:
            what = 'the first occurrence of each pair is kept'
        warnings.warn(f'{source}: {count} duplicate user-item '
                      f'pair(s) removed (first at line {first}); {what}',
                      stacklevel=2)
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


#: MMRec ids are node indices; a largest id beyond
#: :math:`2 \cdot \#\mathrm{distinct} + 1000` is refused as a mistake.
SPARSE_ID_SLACK = 1000


def check_dense_ids(inter: pd.DataFrame, column: str, name: str,
                    source: str = '') -> None:
    r"""Refuses MMRec ids (node indices) whose largest value is far beyond
    their number, :math:`\max + 1 > 2 \cdot \#\mathrm{distinct} +`
    :obj:`SPARSE_ID_SLACK`, which would create that many nodes without an
    interaction (and exhaust memory for ids such as :obj:`10**12`).

    Args:
        inter (pandas.DataFrame): Interactions, with :obj:`column` holding
            integer ids and optionally :obj:`line`.
        column (str): :obj:`'user'` or :obj:`'item'`.
        name (str): The column as the file names it (e.g. :obj:`'itemID'`).
        source (str, optional): The file named in the error.
            (default: :obj:`''`)

    Raises:
        ValueError: Naming the file, the line of the largest id and the fix.
    """
    values = inter[column].to_numpy()
    if values.size == 0:
        return
    largest = int(values.max())
    distinct = int(pd.unique(values).size)
    if largest + 1 <= 2 * distinct + SPARSE_ID_SLACK:
        return
    where = source
    if 'line' in inter.columns:
        line = int(inter['line'].to_numpy()[int(values.argmax())])
        where = f'{source}, line {line}'
    raise ValueError(
        f'{where}: {name} {largest} is far beyond the {distinct} distinct '
        f'{name}s (MMRec ids are 0-based node indices, so this would make '
        f'{largest + 1} {column} nodes). Renumber the {name}s 0..'
        f'{distinct - 1}, or pass remap_ids=True (a config: dataset.remap_ids: '
        'true) to renumber them in id order')


def index_nodes(inter: pd.DataFrame, integer_ids: bool = False,
                source: str = ''
                ) -> Tuple[np.ndarray, List[str], np.ndarray, List[str]]:
    r"""Maps the raw user and item ids of :obj:`inter` to node indices.

    With :obj:`integer_ids` (MMRec's 0-based ids) an id is its own index, so
    that row ``i`` of a feature file stays item ``i``, and ids far beyond
    their number are refused (:func:`check_dense_ids`); otherwise ids are
    sorted (numerically when all are integers) and numbered from 0.

    Returns :obj:`(user, user_ids, item, item_ids)`: the per-interaction
    indices and the raw id of every node.

    Args:
        inter (pandas.DataFrame): Interactions with :obj:`user` and
            :obj:`item` columns (and :obj:`line`, named in errors).
        integer_ids (bool, optional): Whether ids are node indices.
            (default: :obj:`False`)
        source (str, optional): The file named in errors.
            (default: :obj:`''`)
    """
    if integer_ids:
        check_dense_ids(inter, 'user', 'userID', source)
        check_dense_ids(inter, 'item', 'itemID', source)
    user, user_ids = _index(inter['user'], integer_ids)
    item, item_ids = _index(inter['item'], integer_ids)
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
            :obj:`'given'` split, :obj:`time` for the temporal ones (the
            per-user one also takes :obj:`order`, each user's chronological
            position such as MMRec's ``seq_pos``, when there is no
            :obj:`time`).
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
    if method == 'user_temporal':
        column = 'time' if 'time' in inter.columns else 'order'
        if column not in inter.columns:
            raise ValueError(f"{source}: split='user_temporal' needs timestamps "
                             "(a 'timestamp' column) or each user's chronological "
                             "position (a 'seq_pos' column)")
        return user_temporal_split(user, inter[column].to_numpy()), method
    if 'time' not in inter.columns:
        hint = ("; 'seq_pos' orders each user's interactions only, so use "
                "split='user_temporal'" if 'order' in inter.columns else '')
        raise ValueError(f"{source}: split='{method}' needs timestamps "
                         f"(a 'timestamp' column){hint}")
    return global_temporal_split(inter['time'].to_numpy(), temporal_ratios), method


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


def align_item_features(features: Dict[str, np.ndarray], item_ids: List[str],
                        num_ids: int, files: Optional[Dict[str, str]] = None,
                        source: str = '') -> Dict[str, np.ndarray]:
    r"""Checks that every MMRec feature matrix of :obj:`features` has one row
    per item id of the interaction file (row ``i`` = the item whose id is
    ``i``, ids :obj:`0..num_ids - 1`) and returns the rows of the item nodes
    :obj:`item_ids` (all of them, in order, unless the ids were renumbered
    by a k-core filter or :obj:`remap_ids`).

    Args:
        features (Dict[str, numpy.ndarray]): Feature matrices by name.
        item_ids (List[str]): The file id of every item node.
        num_ids (int): The number of item ids, :obj:`max(itemID) + 1`.
        files (Dict[str, str], optional): The file of each feature, named in
            errors. (default: :obj:`None`)
        source (str, optional): The interaction file, named in errors.
            (default: :obj:`''`)

    Raises:
        ValueError: If a matrix has more or fewer rows than :obj:`num_ids`.
    """
    out = {}
    for name, feat in features.items():
        if len(feat) != num_ids:
            where = (files or {}).get(name, f'{name}.npy')
            raise ValueError(
                f'{where} has {len(feat)} rows but the dataset has {num_ids} '
                f'items (itemIDs 0..{num_ids - 1} in '
                f'{os.path.basename(source) or "the interactions"}; row i '
                'must be item i): give the file one row per item')
        out[name] = feat if len(item_ids) == num_ids else \
            feat[np.asarray(item_ids, dtype=np.int64)]
    return out


def add_item_features(data: HeteroData, features: Dict[str, np.ndarray],
                      files: Optional[Dict[str, str]] = None) -> None:
    r"""Adds each modality feature matrix of :obj:`features` (row ``i`` =
    item ``i``) to :obj:`data['item']` under its name, as float32.

    Args:
        data (HeteroData): The graph, with its item nodes, modified in place.
        features (Dict[str, numpy.ndarray]): Feature matrices by name (e.g.
            :obj:`'image_feat'`), one row per item.
        files (Dict[str, str], optional): The file of each feature, named in
            errors. (default: :obj:`None`, :obj:`<name>.npy`)
    """
    num_items = data['item'].num_nodes
    for name, feat in features.items():
        if len(feat) != num_items:
            where = (files or {}).get(name, f'{name}.npy')
            raise ValueError(f'{where} has {len(feat)} rows but the dataset '
                             f'has {num_items} items (row i must be item i)')
        data['item'][name] = torch.from_numpy(np.asarray(feat, dtype=np.float32))


def check_train_edges(label: np.ndarray, method: str, source: str = ''
                      ) -> None:
    r"""Refuses a split without a single training interaction (label 0):
    nothing could be learned from it.

    Args:
        label (numpy.ndarray): The split label of every interaction.
        method (str): The split method used, named in the error.
        source (str, optional): The file named in the error.
            (default: :obj:`''`)
    """
    if label.size and not bool((label == 0).any()):
        fix = ("label some interactions 0 (train) in 'x_label', or use "
               "split='mmrec' to draw a split" if method == 'given' else
               'use another split or more interactions per user')
        raise ValueError(f"{source}: split='{method}' puts none of the "
                         f'{label.size} interactions in training: {fix}')


def build_hetero_data(
    raw: RawDataset,
    split: str = 'auto',
    seed: int = 2024,
    k: int = 0,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    temporal_ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1),
    remap_ids: bool = False,
) -> HeteroData:
    r"""Builds the dataset's :class:`~torch_geometric.data.HeteroData`:
    :func:`drop_duplicate_pairs`, :func:`filter_k_core`, :func:`index_nodes`,
    :func:`split_labels`, :func:`check_train_edges`, :func:`find_cold_start`,
    :func:`add_nodes`, :func:`add_interactions`, :func:`add_item_side`,
    :func:`add_user_side`, :func:`align_item_features`,
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
        remap_ids (bool, optional): Renumber MMRec's integer ids in id order
            instead of using them as node indices (for ids far beyond their
            number, see :func:`check_dense_ids`); :obj:`raw_id` keeps the
            file's ids and feature rows are taken at them.
            (default: :obj:`False`)
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split '{split}' (expected one of {SPLITS})")
    report: Dict[str, Any] = {'source': os.path.basename(raw.source)}
    inter, report['duplicates'] = drop_duplicate_pairs(raw.inter, raw.source)
    if 'label' in raw.inter.columns:
        report['duplicate_label_conflicts'] = duplicate_label_conflicts(
            raw.inter)
    if k > 1:
        inter, removed = filter_k_core(inter, k, raw.source)
        report.update(k_core=k, k_core_removed=removed)
    # After k-core filtering ids are no longer contiguous: renumber.
    as_index = raw.integer_ids and k <= 1 and not remap_ids
    user, user_ids, item, item_ids = index_nodes(inter, as_index, raw.source)
    if raw.integer_ids and remap_ids:
        report['remap_ids'] = True
        changed = [f'{len(ids)} {name}s' for name, ids in
                   (('userID', user_ids), ('itemID', item_ids))
                   if ids and int(ids[-1]) + 1 != len(ids)]
        if changed:
            warnings.warn(f'{raw.source}: remap_ids=True renumbered the '
                          f'{" and the ".join(changed)} 0.. in id order '
                          "(raw_id keeps the file's ids)", stacklevel=2)
    label, report['split'] = split_labels(inter, user, split, seed,
                                          temporal_ratios, raw.source)
    check_train_edges(label, report['split'], raw.source)
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
    features = raw.item_features
    if raw.integer_ids and features:
        num_ids = int(raw.inter['item'].max()) + 1
        features = align_item_features(features, item_ids, num_ids,
                                       raw.item_feature_files, raw.source)
    add_item_features(data, features, raw.item_feature_files)

    data = T.ToUndirected()(data)
    data.report = report
    return data
