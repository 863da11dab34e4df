import math

import pytest
import torch

from mllmrec_pyg.nn.models import BPRMF
from tests.nn.conftest import TRIPLES


def test_bprmf_repr_and_shapes(tiny_data):
    model = BPRMF.from_data(tiny_data, embedding_dim=8)
    assert str(model) == ('BPRMF(3 users, 4 items, embedding_dim=8, '
                          'reg_weight=0.001)')
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (3, 8) and item_emb.shape == (4, 8)
    assert 1e-5 in BPRMF.MMREC_GRID['reg_weight']


def test_bprmf_loss_exact():
    model = BPRMF(num_users=1, num_items=2, embedding_dim=2, reg_weight=0.5)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[2.0, 0.0],
                                                        [0.0, 0.0]]))
    loss = model.loss(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    # -ln sigma(2 - 0) + 0.5 * (|u| + |i+| + |i-|) / 1
    expected = math.log(1 + math.exp(-2)) + 0.5 * (1 + 2 + 0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bprmf_forward_scores_pairs():
    model = BPRMF(num_users=2, num_items=2, embedding_dim=2)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0],
                                                        [0.0, 2.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[2.0, 0.0],
                                                        [1.0, 1.0]]))
    score = model(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    assert score.tolist() == [2.0, 2.0, 0.0]


def test_bprmf_loss_decreases(tiny_data):
    torch.manual_seed(0)
    model = BPRMF.from_data(tiny_data, embedding_dim=4, reg_weight=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(*TRIPLES).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = model.loss(*TRIPLES)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
