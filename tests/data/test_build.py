import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import INTERACTS, REV_INTERACTS
from mllmrec_pyg.data.build import (
    add_interactions,
    add_item_features,
    add_item_side,
    add_nodes,
    add_user_side,
    build_hetero_data,
    drop_duplicate_pairs,
    filter_k_core,
    find_cold_start,
    index_nodes,
    resolve_images,
    split_labels,
)
from mllmrec_pyg.data.readers import RawDataset
from mllmrec_pyg.data.split import mmrec_split


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_drop_duplicate_pairs():
    inter = frame(user=[0, 0, 1, 0], item=[1, 1, 2, 1], line=[2, 3, 4, 5])
    with pytest.warns(UserWarning, match=r'^a.inter: 2 duplicate user-item '
                      r'pair\(s\) removed \(first at line 3\)'):
        out, count = drop_duplicate_pairs(inter, 'a.inter')
    assert count == 2
    assert out['line'].tolist() == [2, 4]
    # Same items for other users are no duplicates.
    unique = frame(user=[0, 1], item=[1, 1], line=[2, 3])
    out, count = drop_duplicate_pairs(unique)
    assert count == 0 and out is unique


def test_filter_k_core():
    # Users a, b, c rate items x, y; user d rates only item w.
    inter = frame(user=['a', 'a', 'b', 'b', 'c', 'c', 'd'],
                  item=['x', 'y', 'x', 'y', 'x', 'y', 'w'])
    out, removed = filter_k_core(inter, 2)
    assert removed == 1
    assert out['user'].tolist() == ['a', 'a', 'b', 'b', 'c', 'c']
    out, removed = filter_k_core(inter, 1)
    assert removed == 0 and len(out) == 7
    with pytest.raises(ValueError, match='a.inter: the 4-core filter removed '
                       'every interaction; lower k'):
        filter_k_core(inter, 4, 'a.inter')


def test_index_nodes():
    # Integer-like ids sort numerically, others lexicographically.
    inter = frame(user=['10', '9', '10'], item=['b', 'a', 'c'])
    user, user_ids, item, item_ids = index_nodes(inter)
    assert user.tolist() == [1, 0, 1] and user_ids == ['9', '10']
    assert item.tolist() == [1, 0, 2] and item_ids == ['a', 'b', 'c']
    # MMRec ids are their own indices (feature rows never add items).
    inter = frame(user=[1, 0], item=[2, 0])
    user, user_ids, item, item_ids = index_nodes(inter, integer_ids=True)
    assert user.tolist() == [1, 0] and user_ids == ['0', '1']
    assert item.tolist() == [2, 0] and item_ids == ['0', '1', '2']
    # Without integer ids they are renumbered.
    *_, item_ids = index_nodes(inter)
    assert item_ids == ['0', '2']


def test_split_labels():
    user = np.array([0, 0, 0, 1, 1, 1])
    given = frame(label=[0, 1, 2, 0, 0, 2], time=[3, 2, 1, 1, 2, 3])
    label, method = split_labels(given, user)
    assert method == 'given' and label.dtype == np.int8
    assert label.tolist() == [0, 1, 2, 0, 0, 2]
    label, method = split_labels(given, user, 'user_temporal')
    assert method == 'user_temporal'
    assert label.tolist() == [2, 1, 0, 0, 1, 2]
    label, method = split_labels(given, user, 'global_temporal',
                                 temporal_ratios=(0.5, 0.0, 0.5))
    assert label.tolist() == [2, 0, 0, 0, 2, 2]
    plain = frame(user=[0, 0, 0, 1, 1, 1])
    label, method = split_labels(plain, user, seed=7)
    assert method == 'mmrec'
    assert label.tolist() == mmrec_split(user, seed=7).tolist()
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        split_labels(plain, user, 'dev')
    with pytest.raises(ValueError, match="a.inter: split='given' needs an "
                       "'x_label' column"):
        split_labels(plain, user, 'given', source='a.inter')
    with pytest.raises(ValueError, match="split='user_temporal' needs "
                       "timestamps .* or each user's chronological position"):
        split_labels(plain, user, 'user_temporal')
    # Without timestamps, each user's order (MMRec's seq_pos) drives the
    # per-user split; it is no global clock, so the global split refuses it.
    ordered = frame(user=[0, 0, 0, 1, 1, 1], order=[0, 2, 1, 2, 0, 1])
    label, method = split_labels(ordered, user, 'user_temporal')
    assert method == 'user_temporal'
    assert label.tolist() == [0, 2, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="a.inter: split='global_temporal' "
                       "needs timestamps .*'seq_pos' orders each user's "
                       "interactions only, so use split='user_temporal'"):
        split_labels(ordered, user, 'global_temporal', source='a.inter')


def test_find_cold_start():
    user = np.array([0, 0, 1])
    # User 1's only interaction is valid; user 2 has none and is not cold.
    with pytest.warns(UserWarning, match=r'1 user\(s\) have no training'):
        has_train, count = find_cold_start(user, np.array([0, 2, 1]), 3)
    assert has_train.tolist() == [True, False, False] and count == 1
    has_train, count = find_cold_start(user, np.array([0, 2, 0]), 2)
    assert has_train.tolist() == [True, True] and count == 0


def test_add_nodes_and_interactions():
    data = HeteroData()
    add_nodes(data, ['u0', 'u1'], ['i0', 'i1', 'i2'], np.array([True, False]))
    assert data['user'].num_nodes == 2 and data['item'].num_nodes == 3
    assert data['user'].raw_id == ['u0', 'u1']
    assert data['item'].raw_id == ['i0', 'i1', 'i2']
    assert data['user'].has_train.tolist() == [True, False]
    inter = frame(time=[5, 6, 7], rating=[1.5, 2, 3])
    add_interactions(data, np.array([0, 0, 1]), np.array([2, 0, 1]),
                     np.array([0, 1, 2], dtype=np.int8), inter)
    store = data[INTERACTS]
    assert store.edge_index.tolist() == [[0, 0, 1], [2, 0, 1]]
    assert store.edge_index.dtype == torch.long
    assert store.train_mask.tolist() == [True, False, False]
    assert store.val_mask.tolist() == [False, True, False]
    assert store.test_mask.tolist() == [False, False, True]
    assert store.time.dtype == torch.float64 and store.time.tolist() == [5, 6, 7]
    assert store.rating.dtype == torch.float32
    assert store.rating.tolist() == [1.5, 2.0, 3.0]
    # Without time or rating columns neither attribute exists.
    data = HeteroData()
    add_interactions(data, np.array([0]), np.array([0]), np.array([0]), frame())
    assert set(data[INTERACTS].keys()) == {'edge_index', 'train_mask',
                                           'val_mask', 'test_mask'}


def test_resolve_images():
    root = os.path.join(os.sep, 'data', 'tiny')
    absolute = os.path.join(os.sep, 'abs', 'x.png')
    assert resolve_images(['', ' http://a/b.jpg ', absolute, 'img/../img/0.png'],
                          root) == [None, 'http://a/b.jpg', absolute,
                                    os.path.join(root, 'img', '0.png')]


def test_add_item_side():
    table = pd.DataFrame({'title': ['Mug', ' '], 'brand': ['Acme', 'B'],
                          'asin': ['A0', 'A2'], 'imUrl': ['http://x/0.jpg', '']},
                         index=['0', '2'])
    data = HeteroData()
    report = add_item_side(data, table, ['0', '1', '2'],
                           text_fields=('brand', 'title', 'genre'))
    assert report == {'items_with_text': 2, 'items_with_image': 1}
    assert data['item'].text == {'brand': ['Acme', '', 'B'],
                                 'title': ['Mug', '', ' ']}
    assert data['item'].meta == {'asin': ['A0', '', 'A2']}
    assert data['item'].image == ['http://x/0.jpg', None, None]
    # Only the columns present are attached.
    data = HeteroData()
    assert add_item_side(data, table[['asin']], ['0'], ('title',)) == {
        'items_with_text': 0}
    assert set(data['item'].keys()) == {'meta'}
    assert add_item_side(HeteroData(), None, ['0']) == {'items_with_text': 0}


def test_add_user_side():
    data = HeteroData()
    table = pd.DataFrame({'user_id': ['R1', 'R0'], 'age': ['30', '20']},
                         index=['1', '0'])
    add_user_side(data, table, ['0', '1', '2'])
    assert data['user'].meta == {'user_id': ['R0', 'R1', ''],
                                 'age': ['20', '30', '']}
    data = HeteroData()
    add_user_side(data, None, ['0'])
    assert 'user' not in data.node_types


def test_add_item_features():
    data = HeteroData()
    data['item'].num_nodes = 2
    add_item_features(data, {'image_feat': np.array([[1, 2], [3, 4]],
                                                    dtype=np.float64)})
    assert data['item'].image_feat.dtype == torch.float32
    assert data['item'].image_feat.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match=r'audio_feat.npy has 3 rows but the '
                       r'dataset has 2 items \(row i must be item i\)'):
        add_item_features(data, {'audio_feat': np.zeros((3, 1))})


def test_build_hetero_data_composes_the_steps():
    inter = frame(user=[0, 0, 1, 1, 0], item=[0, 1, 1, 0, 1],
                  label=[0, 2, 0, 2, 1], line=[2, 3, 4, 5, 6])
    raw = RawDataset(inter=inter, source='/data/t/t.inter', integer_ids=True,
                     item_table=pd.DataFrame({'title': ['Mug']}, index=['1']),
                     item_features={'image_feat': np.eye(2)}, root='/data/t')
    with pytest.warns(UserWarning, match=r'first at line 6\); 1 had conflicting '
                      r'split labels \(kept the first: 1 test\)'):
        data = build_hetero_data(raw)
    assert data.report == {'source': 't.inter', 'duplicates': 1,
                           'duplicate_label_conflicts': {'pairs': 1,
                                                         'kept': {'test': 1}},
                           'split': 'given', 'cold_start_users': 0,
                           'items_with_text': 1}
    assert data['item'].num_nodes == 2
    assert data['item'].text == {'title': ['', 'Mug']}
    assert data['item'].image_feat.tolist() == np.eye(2).tolist()
    assert data[INTERACTS].edge_index.tolist() == [[0, 0, 1, 1], [0, 1, 1, 0]]
    assert data[INTERACTS].test_mask.tolist() == [False, True, False, True]
    assert data[REV_INTERACTS].edge_index.tolist() == [[0, 1, 1, 0],
                                                       [0, 0, 1, 1]]
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        build_hetero_data(raw, split='dev')
