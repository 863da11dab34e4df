import math

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.metrics import (
    LinkPredMAP,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from mllmrec_pyg.metrics import EvaluationResult, Evaluator
from mllmrec_pyg.nn.models import Recommender


def toy_data() -> HeteroData:
    r"""5 users, 6 items.  Training: u0 {0, 1}, u1 {1, 2}, u2 {3}, u3 {4, 5};
    valid: u0 {2}, u1 {3}, u2 {4}; test: u0 {3}, u1 {0}, u2 {5}, u3 {0},
    u4 {1} (u4 has no training item: a cold-start user)."""
    train = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (3, 4), (3, 5)]
    val = [(0, 2), (1, 3), (2, 4)]
    test = [(0, 3), (1, 0), (2, 5), (3, 0), (4, 1)]
    edges = train + val + test
    data = HeteroData()
    data['user'].num_nodes = 5
    data['item'].num_nodes = 6
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor(edges).t().contiguous()
    label = torch.tensor([0] * len(train) + [1] * len(val) + [2] * len(test))
    store.train_mask, store.val_mask, store.test_mask = label == 0, label == 1, label == 2
    return data


# Scores = USER_SCORES (item embeddings are the identity).
USER_SCORES = torch.tensor([
    [9., 8., 7., 1., 2., 3.],   # u0 ranks 2, 5, 4, 3 once 0 and 1 are excluded
    [1., 9., 8., 7., 6., 5.],   # u1 ranks 3, 4, 5, 0
    [6., 5., 4., 9., 3., 2.],   # u2 ranks 0, 1, 2, 4, 5
    [1., 2., 3., 4., 8., 9.],   # u3 ranks 3, 2, 1, 0
    [1., 2., 3., 4., 5., 6.],
])
EMB = (USER_SCORES, torch.eye(6))


def test_users_topk_and_values():
    evaluator = Evaluator(toy_data(), ks=(1, 3), batch_size=2)
    assert str(evaluator) == ('Evaluator(ks=[1, 3], users=(val=3, test=4), '
                              'exclude_val_at_test=False)')
    out = evaluator.evaluate(EMB)
    val, test = out['val'], out['test']
    assert val.users.tolist() == [0, 1, 2]
    assert test.users.tolist() == [0, 1, 2, 3]  # u4: no training item
    assert test.topk.tolist() == [[2, 5, 4], [3, 4, 5], [0, 1, 2], [3, 2, 1]]
    assert val.topk.tolist() == test.topk.tolist()[:3]

    assert val.per_user['recall@1'].tolist() == [1.0, 1.0, 0.0]
    assert val.per_user['hit@3'].tolist() == [1.0, 1.0, 0.0]
    assert val['recall@3'] == pytest.approx(2 / 3)
    # u1's test item 0 is ranked 4th; nobody else finds theirs.
    assert test['recall@3'] == 0.0
    assert test['coverage@3'] == 1.0
    assert test['coverage@1'] == pytest.approx(3 / 6)


def test_exclude_val_at_test():
    out = Evaluator(toy_data(), ks=(1, 3), exclude_val_at_test=True).evaluate(EMB)
    # u0's valid item 2 and u1's valid item 3 leave the test ranking.
    assert out['test'].topk.tolist() == [[5, 4, 3], [4, 5, 0], [0, 1, 2], [3, 2, 1]]
    assert out['test'].per_user['recall@3'].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert out['test'].per_user['ndcg@3'].tolist() == [1 / math.log2(4), 1 / math.log2(4),
                                                       0.0, 0.0]
    assert out['val'].topk.tolist() == [[2, 5, 4], [3, 4, 5], [0, 1, 2]]


def test_recommend_lists_without_excluded_items():
    evaluator = Evaluator(toy_data(), ks=(1, 3))
    users = evaluator.users['test']
    lists = evaluator.recommend(EMB, users, split='test', k=3)
    assert lists == [[2, 5, 4], [3, 4, 5], [0, 1, 2], [3, 2, 1]]
    # The lists are the evaluated ranking:
    assert lists == evaluator.evaluate(EMB)['test'].topk.tolist()
    # k beyond the 6 items: each user gets the items it may be shown, so
    # u0 (2 training items) gets 4; u4 (cold start) gets all 6.
    lists = evaluator.recommend(EMB, torch.tensor([0, 2, 4]), k=10)
    assert lists == [[2, 5, 4, 3], [0, 1, 2, 4, 5], [5, 4, 3, 2, 1, 0]]

    strict = Evaluator(toy_data(), ks=(3, ), exclude_val_at_test=True)
    lists = strict.recommend(EMB, torch.arange(4), k=10)
    assert lists == [[5, 4, 3], [4, 5, 0], [0, 1, 2, 5], [3, 2, 1, 0]]
    # At validation time only training items are excluded.
    assert strict.recommend(EMB, torch.tensor([0]), split='val', k=10) == \
        [[2, 5, 4, 3]]


def test_recommend_embeds_a_model_in_evaluation_mode():
    class Fixed(Recommender):
        def embed(self):
            assert not self.training
            return EMB

    model = Fixed()
    evaluator = Evaluator(toy_data(), ks=(3, ))
    assert evaluator.recommend(model, torch.tensor([1]), k=2) == [[3, 4]]
    assert model.training  # restored
    with pytest.raises(ValueError, match="no 'train' split"):
        evaluator.recommend(model, torch.tensor([1]), split='train')


def test_agrees_with_pyg_link_pred_metrics():
    torch.manual_seed(0)
    num_users, num_items, k = 40, 30, 10
    user = torch.randint(num_users, (400, ))
    item = torch.randint(num_items, (400, ))
    label = torch.randint(3, (400, ))
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.stack([user, item])
    # A pair is in one split only, the first time it appears.
    key = user * num_items + item
    first = torch.ones_like(key, dtype=torch.bool)
    _, inverse = torch.unique(key, return_inverse=True)
    seen = set()
    for i, key_i in enumerate(inverse.tolist()):
        first[i] = key_i not in seen
        seen.add(key_i)
    store.train_mask = first & (label == 0)
    store.val_mask = first & (label == 1)
    store.test_mask = first & (label == 2)
    emb = (torch.randn(num_users, 8), torch.randn(num_items, 8))

    result = Evaluator(data, ks=(k, ), batch_size=7).evaluate(emb, splits=('test', ))['test']
    users = result.users
    position = torch.full((num_users, ), -1)
    position[users] = torch.arange(users.numel())
    test_edges = store.edge_index[:, store.test_mask]
    keep = position[test_edges[0]] >= 0
    edge_label_index = torch.stack([position[test_edges[0][keep]], test_edges[1][keep]])
    for metric, name in [(LinkPredRecall(k), 'recall'), (LinkPredNDCG(k), 'ndcg'),
                         (LinkPredPrecision(k), 'precision'), (LinkPredMAP(k), 'map')]:
        metric.update(result.topk, edge_label_index)
        assert float(metric.compute()) == pytest.approx(result[f'{name}@{k}'], abs=1e-6)


def test_save_load_roundtrip(tmp_path):
    result = Evaluator(toy_data(), ks=(1, 3)).evaluate(EMB, splits=('test', ))['test']
    path = str(tmp_path / 'test.npz')
    result.save(path)
    loaded = EvaluationResult.load(path)
    assert str(loaded) == 'EvaluationResult(split=test, num_users=4)'
    assert loaded.summary == result.summary
    assert torch.equal(loaded.per_user['ndcg@3'], result.per_user['ndcg@3'])
    assert torch.equal(loaded.topk, result.topk)
    with pytest.raises(FileNotFoundError, match='no such per-user result file'):
        EvaluationResult.load(str(tmp_path / 'missing.npz'))


def test_cut_off_beyond_the_catalogue_ranks_every_item():
    # 6 items: @10 sees the same list as @6; precision still divides by 10.
    long = Evaluator(toy_data(), ks=(3, 10)).evaluate(EMB)['test'].summary
    whole = Evaluator(toy_data(), ks=(3, 6)).evaluate(EMB)['test'].summary
    for name in ('recall', 'ndcg', 'map', 'hit', 'novelty', 'coverage'):
        assert long[f'{name}@10'] == pytest.approx(whole[f'{name}@6']), name
    assert long['precision@10'] == pytest.approx(whole['precision@6'] * 6 / 10)
    assert long['recall@3'] == whole['recall@3']


def test_membership_of_excluded_items():
    evaluator = Evaluator(toy_data(), ks=(3, ), exclude_val_at_test=True)
    users, items = torch.tensor([0, 0, 0, 1, 4]), torch.tensor([1, 2, 3, 3, 1])
    # u0: training 0, 1 and validation 2 are excluded at test time.
    assert evaluator.is_excluded('test', users, items).tolist() == \
        [True, True, False, True, False]
    assert evaluator.is_excluded('val', users, items).tolist() == \
        [True, False, False, False, False]


def test_errors():
    with pytest.raises(ValueError, match="no 'train' split"):
        Evaluator(toy_data(), ks=(1, )).evaluate(EMB, splits=('train', ))
