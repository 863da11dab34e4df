import hashlib
import warnings

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import (
    FullHistoryLeakWarning,
    check_split_fingerprint,
    history_edge_index,
    load_dataset,
    split_fingerprint,
)
from mllmrec_pyg.llm.prefer import FullHistoryLeakWarning as FromPrefer


def dataset(edges=((0, 0, 0), (0, 1, 0), (0, 2, 1), (1, 1, 0), (1, 2, 2)),
            users=('ann', 'bob'), items=('i0', 'i1', 'i2'),
            report=None, with_time=True):
    r"""Edges as (user, item, split) with split 0/1/2 = train/val/test."""
    data = HeteroData()
    data['user'].num_nodes = len(users)
    data['user'].raw_id = list(users)
    data['item'].num_nodes = len(items)
    data['item'].raw_id = list(items)
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor([[u for u, _, _ in edges],
                                     [i for _, i, _ in edges]])
    split = torch.tensor([s for _, _, s in edges])
    store.train_mask, store.val_mask, store.test_mask = (
        split == 0, split == 1, split == 2)
    if with_time:
        store.time = torch.arange(len(edges), dtype=torch.float64)
    data.report = ({'split': 'mmrec', 'seed': 2024} if report is None
                   else report)
    return data


def test_history_edge_index_train():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        edge_index, times = history_edge_index(dataset(), 'train')
    assert edge_index.tolist() == [[0, 0, 1], [0, 1, 1]]
    assert times.tolist() == [0.0, 1.0, 3.0]
    _, times = history_edge_index(dataset(with_time=False), 'train')
    assert times is None


def test_history_edge_index_full_history_warns():
    assert FromPrefer is FullHistoryLeakWarning
    with pytest.warns(FullHistoryLeakWarning,
                      match='user features are built from ALL.*LEAKED'):
        edge_index, times = history_edge_index(dataset(), 'full_history',
                                               what='user features')
    assert edge_index.tolist() == [[0, 0, 0, 1, 1], [0, 1, 2, 1, 2]]
    assert times.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="Unknown source 'val' for the user "
                       r"histories \(expected 'train' or 'full_history'\)"):
        history_edge_index(dataset(), 'val')  # type: ignore[arg-type]


def test_split_fingerprint_exact_and_processing_independent():
    # The counts, then the sorted unique training (user, item) raw-id pairs.
    hashed = (b'users=2;items=3\n["ann", "i0"]\n["ann", "i1"]\n'
              b'["bob", "i1"]\n')
    assert hashlib.sha256(hashed).hexdigest()[:16] == 'be6913fc5b6dc384'
    fingerprint = split_fingerprint(dataset())
    assert fingerprint == 'split=mmrec;seed=2024;train=be6913fc5b6dc384'
    # Edge order, duplicated edges and node numbering do not matter.
    shuffled = dataset(edges=((1, 0, 2), (0, 1, 0), (1, 1, 0), (1, 2, 0),
                              (1, 2, 0), (0, 0, 1)),
                       users=('bob', 'ann'), items=('i2', 'i1', 'i0'))
    assert split_fingerprint(shuffled) == fingerprint
    # Any change of the training edges, the counts or the rule changes it.
    moved = dataset(edges=((0, 0, 0), (0, 1, 1), (0, 2, 1), (1, 1, 0),
                           (1, 2, 2)))
    assert split_fingerprint(moved) != fingerprint
    extra_item = dataset(items=('i0', 'i1', 'i2', 'i3'))
    assert split_fingerprint(extra_item) != fingerprint
    assert split_fingerprint(dataset(report={'split': 'mmrec', 'seed': 1})) \
        == 'split=mmrec;seed=1;train=be6913fc5b6dc384'
    assert split_fingerprint(dataset(report={'split': 'given'})) == \
        'split=given;train=be6913fc5b6dc384'
    no_report = dataset()
    del no_report.report
    assert split_fingerprint(no_report) == \
        'split=unknown;train=be6913fc5b6dc384'


def test_split_fingerprint_of_built_datasets(tiny_mmrec):
    given = load_dataset(str(tiny_mmrec))
    assert split_fingerprint(given).startswith('split=given;train=')
    assert split_fingerprint(load_dataset(str(tiny_mmrec))) == \
        split_fingerprint(given)
    first = load_dataset(str(tiny_mmrec), split='mmrec', seed=1)
    second = load_dataset(str(tiny_mmrec), split='mmrec', seed=2)
    assert split_fingerprint(first).startswith('split=mmrec;seed=1;train=')
    assert split_fingerprint(first) != split_fingerprint(second)


def test_check_split_fingerprint():
    data = dataset()
    check_split_fingerprint(split_fingerprint(data), data, 'p.tsv')
    with pytest.raises(ValueError) as info:
        check_split_fingerprint('split=mmrec;seed=1;train=0', data, 'p.tsv')
    message = str(info.value)
    assert message == (
        "p.tsv was built on another split (split_fingerprint "
        "'split=mmrec;seed=1;train=0', this dataset's "
        "'split=mmrec;seed=2024;train=be6913fc5b6dc384'), so it may have "
        'seen its validation and test items: rebuild it on this dataset and '
        'split with `mllmrec prefer DATASET_PATH --out DIR` (finished users '
        'come from the cache)')
    assert '\n' not in message
    for missing in (None, ''):
        with pytest.raises(ValueError, match='p.tsv records no '
                           'split_fingerprint .*rebuild it on this dataset'):
            check_split_fingerprint(missing, data, 'p.tsv')
