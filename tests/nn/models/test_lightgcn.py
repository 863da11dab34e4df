import pytest
import torch
from torch_geometric.testing import withDevice

from mllmrec_pyg.nn.models import LightGCN
from tests.nn.conftest import TRIPLES


def test_lightgcn_repr(tiny_data):
    model = LightGCN.from_data(tiny_data, embedding_dim=8, num_layers=2)
    assert str(model) == ('LightGCN(3 users, 4 items, embedding_dim=8, '
                          'num_layers=2, reg_weight=0.0001)')
    assert LightGCN.MMREC_GRID == {
        'num_layers': [1, 2, 3, 4],
        'reg_weight': [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}


def test_lightgcn_embed_exact_on_one_edge():
    # One user, one item, one interaction: A~ = [[0, 1], [1, 0]].
    model = LightGCN(1, 1, torch.tensor([[0], [0]]), embedding_dim=2,
                     num_layers=2)
    with torch.no_grad():
        model.user_embedding.copy_(torch.tensor([[3.0, 0.0]]))
        model.item_embedding.copy_(torch.tensor([[0.0, 6.0]]))
    user_emb, item_emb = model.embed()
    # Mean of layers: (a + b + a) / 3 for the user, (b + a + b) / 3 item.
    assert torch.allclose(user_emb, torch.tensor([[2.0, 2.0]]))
    assert torch.allclose(item_emb, torch.tensor([[1.0, 4.0]]))

    model.combine = 'sum'
    user_emb, _ = model.embed()
    assert torch.allclose(user_emb, torch.tensor([[6.0, 6.0]]))


def test_lightgcn_forward_scores_pairs():
    # Two users, one item; u0 - i0 only: A~ = [[0, 0, 1], [0, 0, 0],
    # [1, 0, 0]] (u1 is isolated).  With one layer summed, u0 = (1, 0) +
    # (0, 2) and i0 = (0, 2) + (1, 0): score 5; u1 = (3, 3), score 9.
    model = LightGCN(2, 1, torch.tensor([[0], [0]]), embedding_dim=2,
                     num_layers=1, combine='sum')
    with torch.no_grad():
        model.user_embedding.copy_(torch.tensor([[1.0, 0.0], [3.0, 3.0]]))
        model.item_embedding.copy_(torch.tensor([[0.0, 2.0]]))
    score = model(torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert score.tolist() == [5.0, 9.0]
    score.sum().backward()  # differentiable, unlike recommend()
    assert model.user_embedding.grad is not None


def test_lightgcn_uses_training_edges_only(tiny_data):
    torch.manual_seed(0)
    model = LightGCN.from_data(tiny_data, embedding_dim=4, num_layers=1)
    reference = tiny_data.clone()
    store = reference['user', 'interacts', 'item']
    keep = store.train_mask
    store.edge_index = store.edge_index[:, keep]
    for key in ('train_mask', 'val_mask', 'test_mask'):
        store[key] = store[key][keep]
    other = LightGCN.from_data(reference, embedding_dim=4, num_layers=1)
    other.load_state_dict(model.state_dict())
    for a, b in zip(model.embed(), other.embed(), strict=True):
        assert torch.equal(a, b)
    # 5 training interactions, both directions:
    assert model.adj.size(1) == 10


def test_lightgcn_loss_exact_regulariser():
    model = LightGCN(1, 2, torch.tensor([[0], [0]]), embedding_dim=2,
                     num_layers=1, reg_weight=0.5)
    with torch.no_grad():
        model.user_embedding.copy_(torch.tensor([[3.0, 4.0]]))
        model.item_embedding.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0]]))
    loss = model.loss(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    # The user's final embedding is (u + 0) / 2, the positive item's (0 + u)
    # / 2: score 6.25; the isolated negative item scores 0.  The
    # regulariser acts on the layer-0 embeddings: |u| = 5.
    expected = torch.nn.functional.softplus(torch.tensor(-6.25)) + 0.5 * 5
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@withDevice
def test_lightgcn_loss_decreases(tiny_data, device):
    torch.manual_seed(0)
    model = LightGCN.from_data(tiny_data, embedding_dim=4, num_layers=2,
                               reg_weight=0.0).to(device)
    user, pos, neg = (t.to(device) for t in TRIPLES)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(user, pos, neg).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = model.loss(user, pos, neg)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
