import pytest
import torch

from mllmrec_pyg.utils import PairSet


def test_pair_set_keys_and_membership():
    # (1, 2) twice, (0, 5), (0, 2) over 6 items.
    pairs = PairSet(torch.tensor([[1, 0, 1, 0], [2, 5, 2, 2]]), num_items=6)
    assert str(pairs) == 'PairSet(num_pairs=3, num_items=6)'
    assert len(pairs) == 3
    assert pairs.keys.tolist() == [2, 5, 8]
    assert pairs.user.tolist() == [0, 0, 1]
    assert pairs.item.tolist() == [2, 5, 2]
    user = torch.tensor([0, 0, 1, 1, 2, 0])
    item = torch.tensor([2, 3, 2, 5, 0, 5])
    assert pairs.contains(user, item).tolist() == [True, False, True, False,
                                                   False, True]


def test_pair_set_broadcasts_users_against_ranked_lists():
    pairs = PairSet(torch.tensor([[0, 1], [1, 0]]), num_items=3)
    topk = torch.tensor([[1, 0, 2], [1, 0, 2]])
    hits = pairs.contains(torch.tensor([[0], [1]]), topk)
    assert hits.tolist() == [[True, False, False], [False, True, False]]


def test_pair_set_empty_and_beyond_the_last_key():
    empty = PairSet(torch.empty(2, 0, dtype=torch.long), num_items=4)
    assert len(empty) == 0
    assert empty.contains(torch.tensor([[0, 1]]), torch.tensor([[3], [2]])
                          ).tolist() == [[False, False], [False, False]]
    # A query above every key must not index past the end.
    pairs = PairSet(torch.tensor([[0], [1]]), num_items=4)
    assert pairs.contains(torch.tensor([9]), torch.tensor([3])).tolist() == \
        [False]


def test_pair_set_union_and_to():
    a = PairSet(torch.tensor([[0, 1], [1, 1]]), num_items=2)
    b = PairSet(torch.tensor([[1, 0], [1, 0]]), num_items=2)
    union = a.union(b)
    assert union.keys.tolist() == [0, 1, 3]
    assert a.keys.tolist() == [1, 3]  # unchanged
    assert torch.equal(union.to('cpu').keys, union.keys)
    with pytest.raises(ValueError, match='over 2 and 3 items'):
        a.union(PairSet(torch.tensor([[0], [0]]), num_items=3))
    with pytest.raises(ValueError, match=r'shape \[2, E\]'):
        PairSet(torch.tensor([0, 1]), num_items=2)
