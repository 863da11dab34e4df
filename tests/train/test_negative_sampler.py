import pytest
import torch

from mllmrec_pyg.train import UniformNegativeSampler
from mllmrec_pyg.utils import PairSet


def _train_edges():
    # User 0 holds items 0-3 of 5 seen items (0-4), user 1 holds 4, user 2 holds 0 and 2.
    return torch.tensor([[0, 0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 4, 0, 2]])


def test_never_returns_a_training_positive():
    edges = _train_edges()
    sampler = UniformNegativeSampler(edges, num_items=7, batch_size=3)
    assert str(sampler) == ('UniformNegativeSampler(num_interactions=7, num_candidates=5, '
                            'batch_size=3)')
    user = torch.tensor([0] * 500 + [1] * 500 + [2] * 500)
    neg = sampler.sample_negatives(user, torch.Generator().manual_seed(0))
    positives = {(u, i) for u, i in edges.t().tolist()}
    assert all((u, i) not in positives for u, i in zip(user.tolist(), neg.tolist(), strict=True))
    # User 0's only possible negative among the items seen in training is 4.
    assert set(neg[:500].tolist()) == {4}
    # Items 5 and 6 have no training interaction: never drawn (MMRec).
    assert set(neg.tolist()) <= {0, 1, 2, 3, 4}
    assert set(neg[500:1000].tolist()) == {0, 1, 2, 3}


def test_is_positive_tests_training_pairs():
    sampler = UniformNegativeSampler(_train_edges(), num_items=7)
    assert isinstance(sampler.positives, PairSet)
    assert len(sampler.positives) == 7
    user = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    item = torch.tensor([3, 4, 4, 0, 2, 1, 0])
    assert sampler.is_positive(user, item).tolist() == [True, False, True, False,
                                                        True, False, False]


def test_all_items_draws_from_the_catalogue():
    sampler = UniformNegativeSampler(_train_edges(), num_items=7, all_items=True)
    neg = sampler.sample_negatives(torch.zeros(2000, dtype=torch.long),
                                   torch.Generator().manual_seed(0))
    assert set(neg.tolist()) == {4, 5, 6}


def test_epoch_visits_every_interaction_once_and_is_seeded():
    edges = _train_edges()
    sampler = UniformNegativeSampler(edges, num_items=5, batch_size=3)
    assert len(sampler) == 3
    batches = list(sampler.epoch(torch.Generator().manual_seed(1)))
    assert [b[0].numel() for b in batches] == [3, 3, 1]
    pairs = sorted(zip(torch.cat([b[0] for b in batches]).tolist(),
                       torch.cat([b[1] for b in batches]).tolist(), strict=True))
    assert pairs == sorted(map(tuple, edges.t().tolist()))
    again = list(sampler.epoch(torch.Generator().manual_seed(1)))
    for first, second in zip(batches, again, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))


def test_user_holding_every_item_is_an_error():
    with pytest.raises(ValueError, match='User 0 has a training interaction with every'):
        UniformNegativeSampler(torch.tensor([[0, 0, 1], [0, 1, 0]]), num_items=2)
