import numpy as np
import pytest

from mllmrec_pyg.data.split import (
    global_temporal_split,
    k_core,
    mmrec_holdout_counts,
    mmrec_split,
    user_temporal_split,
)


def test_mmrec_holdout_counts():
    n = np.array([1, 2, 3, 5, 9, 10, 14, 15, 20, 37])
    valid, test = mmrec_holdout_counts(n)
    # n < 10: one valid, one test (capped by n); else k = int(0.2 n),
    # valid = k // 2, test = k - valid.
    assert valid.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 2, 3]
    assert test.tolist() == [1, 1, 1, 1, 1, 1, 1, 2, 2, 4]


def test_mmrec_split_counts_and_seed():
    user = np.repeat(np.arange(4), [5, 10, 20, 2])
    label = mmrec_split(user, seed=7)
    for u, (tr, va, te) in enumerate([(3, 1, 1), (8, 1, 1), (16, 2, 2), (0, 1, 1)]):
        mine = label[user == u]
        assert (mine == 0).sum() == tr
        assert (mine == 1).sum() == va
        assert (mine == 2).sum() == te
    assert np.array_equal(label, mmrec_split(user, seed=7))
    other = [mmrec_split(user, seed=s) for s in range(5)]
    assert any(not np.array_equal(label, o) for o in other)


def test_user_temporal_split_holds_out_latest():
    user = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    time = np.array([5, 1, 4, 2, 3, 30, 10, 20])
    label = user_temporal_split(user, time)
    # User 0: times 1,2,3 train, 4 valid, 5 test.  User 1: 10 train,
    # 20 valid, 30 test.
    assert label.tolist() == [2, 0, 1, 0, 0, 2, 0, 1]


def test_global_temporal_split():
    time = np.array([9, 0, 8, 1, 7, 2, 6, 3, 5, 4])
    label = global_temporal_split(time, (0.6, 0.2, 0.2))
    assert label.tolist() == [2, 0, 2, 0, 1, 0, 1, 0, 0, 0]
    with pytest.raises(ValueError, match='summing to 1'):
        global_temporal_split(time, (0.5, 0.2, 0.2))


def test_k_core():
    # Item 2 has one user; removing it leaves user 2 with one item, which
    # removes user 2, which leaves item 3 with one user: all cascade away.
    user = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    item = np.array([0, 1, 0, 1, 2, 3, 3, 4])
    keep = k_core(user, item, 2)
    assert keep.tolist() == [True, True, True, True, False, False, False, False]
    assert k_core(user, item, 0).all()
