import pytest
import torch

from mllmrec_pyg.nn.models import VBPR
from tests.nn.conftest import TRIPLES


def test_vbpr_repr_and_features(tiny_data):
    model = VBPR.from_data(tiny_data, embedding_dim=8)
    assert str(model) == ('VBPR(3 users, 4 items, feature_channels=4, '
                          'embedding_dim=8, reg_weight=0.001)')
    tiny_data['item'].image_feat = torch.ones(4, 3)
    model = VBPR.from_data(tiny_data, embedding_dim=8)
    # Text first, then vision, as MMRec concatenates them.
    assert torch.equal(model.item_features,
                       torch.cat([torch.eye(4), torch.ones(4, 3)], dim=-1))
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (3, 16) and item_emb.shape == (4, 16)
    assert 'item_features' not in model.state_dict()
    # The dataset's own text features (MMRec's text_feat.npy) take the text
    # slot instead of x.
    tiny_data['item'].text_feat = 2 * torch.ones(4, 2)
    model = VBPR.from_data(tiny_data, embedding_dim=8)
    assert torch.equal(model.item_features,
                       torch.cat([2 * torch.ones(4, 2), torch.ones(4, 3)], dim=-1))
    del tiny_data['item'].x, tiny_data['item'].text_feat
    assert torch.equal(VBPR.from_data(tiny_data).item_features, torch.ones(4, 3))


def test_vbpr_needs_features(tiny_data):
    del tiny_data['item'].x
    with pytest.raises(ValueError, match='VBPR needs item features'):
        VBPR.from_data(tiny_data)


def test_vbpr_embedding_and_loss_exact():
    model = VBPR(num_users=1, item_features=torch.tensor([[1.0], [2.0]]),
                 embedding_dim=1, reg_weight=0.5)
    with torch.no_grad():
        model.user_embedding.copy_(torch.tensor([[1.0, 1.0]]))
        model.item_embedding.copy_(torch.tensor([[1.0], [0.0]]))
        model.item_linear.weight.fill_(2.0)
        model.item_linear.bias.fill_(-1.0)
    _, item_emb = model.embed()
    # [id || 2 f - 1]
    assert item_emb.tolist() == [[1.0, 1.0], [0.0, 3.0]]
    loss = model.loss(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]))
    # Scores 3 (positive) and 2 (negative); norms sqrt(2), 3, sqrt(2).
    expected = (torch.nn.functional.softplus(torch.tensor(-1.0)) +
                0.5 * (2 * 2 ** 0.5 + 3))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_vbpr_forward_scores_pairs():
    model = VBPR(num_users=1, item_features=torch.tensor([[1.0], [2.0]]),
                 embedding_dim=1)
    with torch.no_grad():
        model.user_embedding.copy_(torch.tensor([[1.0, 1.0]]))
        model.item_embedding.copy_(torch.tensor([[1.0], [0.0]]))
        model.item_linear.weight.fill_(2.0)
        model.item_linear.bias.fill_(-1.0)
    # Items [1, 1] and [0, 3].
    score = model(torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert score.tolist() == [2.0, 3.0]


def test_vbpr_loss_decreases(tiny_data):
    torch.manual_seed(0)
    model = VBPR.from_data(tiny_data, embedding_dim=4, reg_weight=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(*TRIPLES).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = model.loss(*TRIPLES)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
