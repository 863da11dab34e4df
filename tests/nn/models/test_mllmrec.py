import pytest
import torch
import torch.nn.functional as F
from torch_geometric.testing import withDevice

from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.nn import item_graph_propagation
from mllmrec_pyg.nn.loss import bpr_loss
from mllmrec_pyg.nn.models import MLLMRec
from tests.nn.conftest import TRIPLES

# x + S x for the tiny item graph (i0 <- 0.5 i1, i1 <- 0.5 i0, i2 <- 0.25 i3)
# over one-hot item features.
ONE_LAYER = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0],
                          [0.0, 0.0, 1.0, 0.25], [0.0, 0.0, 0.0, 1.0]])
# ... plus S^2 x (i0 <- 0.25 i0, i1 <- 0.25 i1; i3 has no in-edge).
TWO_LAYERS = torch.tensor([[1.25, 0.5, 0.0, 0.0], [0.5, 1.25, 0.0, 0.0],
                           [0.0, 0.0, 1.0, 0.25], [0.0, 0.0, 0.0, 1.0]])


def _count_conv_calls(model):
    calls = []
    model.conv.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_mllmrec_repr(tiny_data):
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2)
    assert str(model) == ('MLLMRec(3 users, 4 items, in_channels=4, '
                          'hidden_channels=8, out_channels=2, item_layers=1, '
                          'ui_layers=0, user_init=features)')
    assert str(model.user_mlp) == (
        'Sequential(\n'
        '  (0): Linear(in_features=4, out_features=8, bias=True)\n'
        '  (1): LeakyReLU(negative_slope=0.01)\n'
        '  (2): Linear(in_features=8, out_features=2, bias=True)\n'
        ')')


def test_mllmrec_item_propagation_exact_and_frozen(tiny_data):
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2)
    assert torch.equal(model.item_input, ONE_LAYER)
    assert not model.item_input.requires_grad
    assert torch.equal(model.user_input, tiny_data['user'].x)
    # Derived from the data, so not part of checkpoints:
    assert set(model.state_dict()) == {
        'user_mlp.0.weight', 'user_mlp.0.bias', 'user_mlp.2.weight',
        'user_mlp.2.bias', 'item_mlp.0.weight', 'item_mlp.0.bias',
        'item_mlp.2.weight', 'item_mlp.2.bias'}

    two = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2,
                            item_layers=2)
    assert torch.equal(two.item_input, TWO_LAYERS)


def test_item_graph_propagation_exact(tiny_data):
    store = tiny_data['item', 'similar', 'item']
    x = torch.eye(4)
    assert torch.equal(item_graph_propagation(x, store.edge_index,
                                              store.edge_weight), ONE_LAYER)
    assert torch.equal(item_graph_propagation(x, store.edge_index,
                                              store.edge_weight, 2),
                       TWO_LAYERS)
    assert torch.equal(item_graph_propagation(x, store.edge_index,
                                              store.edge_weight, 0), x)
    # Without weights: D^-1/2 S D^-1/2 with row sums 1, 1, 1, 0, so i2
    # receives nothing from i3 (degree 0), as the reference.
    assert torch.equal(item_graph_propagation(x, store.edge_index),
                       torch.tensor([[1.0, 1.0, 0.0, 0.0],
                                     [1.0, 1.0, 0.0, 0.0],
                                     [0.0, 0.0, 1.0, 0.0],
                                     [0.0, 0.0, 0.0, 1.0]]))
    # Weights are cast to the features' dtype.
    out = item_graph_propagation(x.double(), store.edge_index,
                                 store.edge_weight)
    assert out.dtype == torch.float64
    assert torch.equal(out, ONE_LAYER.double())
    with pytest.raises(ValueError, match="'num_layers' must be >= 0"):
        item_graph_propagation(x, store.edge_index, num_layers=-1)


def test_mllmrec_forward_scores_pairs(tiny_data):
    for ui_layers in (0, 1):
        model = MLLMRec.from_data(tiny_data, hidden_channels=8,
                                  out_channels=2, ui_layers=ui_layers)
        user, item = torch.tensor([0, 2, 1]), torch.tensor([3, 0, 1])
        user_emb, item_emb = model.embed()
        expected = (user_emb[user] * item_emb[item]).sum(dim=-1)
        assert torch.equal(model(user, item), expected)
    # For the one-layer MLPs with identity weights and zero biases, the
    # score is the dot product of the inputs.
    model = MLLMRec.from_data(tiny_data, hidden_channels=4, out_channels=4,
                              negative_slope=1.0)
    with torch.no_grad():
        for mlp in (model.user_mlp, model.item_mlp):
            for i in (0, 2):
                mlp[i].weight.copy_(torch.eye(4))
    # u2 = (0, 0, 1, 1), i2 = (0, 0, 1, 0.25): 1.25; u0 = e0, i1 = (0.5, 1).
    score = model(torch.tensor([2, 0]), torch.tensor([2, 1]))
    assert score.tolist() == [1.25, 0.5]


def test_mllmrec_item_propagation_computed_once(tiny_data):
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2)
    calls = _count_conv_calls(model)
    before = model.item_input.clone()
    loss = model.loss(*TRIPLES)
    loss.backward()
    model.embed()
    assert calls == []
    assert torch.equal(model.item_input, before)
    assert model.item_input.grad is None


def test_mllmrec_unweighted_item_graph_is_normalised(tiny_data):
    del tiny_data['item', 'similar', 'item'].edge_weight
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2)
    # Row sums (received weight) 1, 1, 1, 0: D^-1/2 S D^-1/2 is S, except
    # i2 <- i3 where i3's degree 0 makes the weight 0 (as the reference).
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0],
                             [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert torch.equal(model.item_input, expected)


def test_mllmrec_without_item_gcn(tiny_data):
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2,
                              item_layers=0)
    assert torch.equal(model.item_input, tiny_data['item'].x)
    del tiny_data['item', 'similar', 'item']
    # No graph needed at all then:
    model = MLLMRec.from_data(tiny_data, item_layers=0)
    assert model.item_layers == 0
    with pytest.raises(ValueError, match='RefineItemGraph'):
        MLLMRec.from_data(tiny_data)


def test_mllmrec_random_user_init(tiny_data):
    reference = MLLMRec.from_data(tiny_data, hidden_channels=8,
                                  out_channels=2)
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2,
                              user_init='random')
    assert model.user_input is None
    assert model.user_embedding is not None
    assert model.user_embedding.weight.shape == (3, 4)
    assert model.user_embedding.weight.requires_grad
    n_ref = sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_ref + 3 * 4
    # The item side is untouched by the user switch:
    assert torch.equal(model.item_input, reference.item_input)
    assert str(model).endswith('user_init=random)')

    del tiny_data['user'].x
    model = MLLMRec.from_data(tiny_data, user_init='random')
    assert model.num_users == 3
    with pytest.raises(ValueError, match="user_init='random'"):
        MLLMRec.from_data(tiny_data)


def test_mllmrec_user_item_propagation_exact(tiny_data):
    torch.manual_seed(0)
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2,
                              ui_layers=2)
    calls = _count_conv_calls(model)
    user_emb, item_emb = model.embed()
    assert len(calls) == 2

    # Independent dense reference over the TRAINING edges only.
    h_u = model.user_mlp(tiny_data['user'].x)
    h_i = model.item_mlp(ONE_LAYER)
    train = train_edge_index(tiny_data)
    a = torch.zeros(7, 7)
    a[train[0], train[1] + 3] = 1.0
    a[train[1] + 3, train[0]] = 1.0
    d = a.sum(dim=1).pow(-0.5)
    a = d.view(-1, 1) * a * d.view(1, -1)
    x = F.normalize(torch.cat([h_u, h_i]), dim=-1)
    z = x + a @ x + a @ a @ x
    assert torch.allclose(user_emb, h_u + z[:3], atol=1e-6)
    assert torch.allclose(item_emb, h_i + z[3:], atol=1e-6)

    mean = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2,
                             ui_layers=2, ui_combine='mean')
    mean.load_state_dict(model.state_dict())
    user_mean, _ = mean.embed()
    assert torch.allclose(user_mean, h_u + z[:3] / 3, atol=1e-6)


def test_mllmrec_batch_loss_matches_full_embedding(tiny_data):
    for ui_layers in (0, 1):
        model = MLLMRec.from_data(tiny_data, hidden_channels=8,
                                  out_channels=2, ui_layers=ui_layers,
                                  reg_weight=0.1)
        user, pos, neg = TRIPLES
        user_emb, item_emb = model.embed()
        u, p, n = user_emb[user], item_emb[pos], item_emb[neg]
        expected = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        expected = expected + 0.1 * (u.norm() + p.norm() + n.norm()) / 5
        assert torch.allclose(model.loss(user, pos, neg), expected)


def test_mllmrec_xavier_init(tiny_data):
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2)
    for linear in (model.user_mlp[0], model.item_mlp[2]):
        assert torch.count_nonzero(linear.bias) == 0
        fan_in, fan_out = linear.in_features, linear.out_features
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert linear.weight.abs().max() <= bound


def test_mllmrec_loss_decreases(tiny_data):
    torch.manual_seed(12345)
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = model.loss(*TRIPLES).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = model.loss(*TRIPLES)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_mllmrec_invalid_arguments(tiny_data):
    with pytest.raises(ValueError, match="Unknown user_init 'ids'"):
        MLLMRec.from_data(tiny_data, user_init='ids')
    with pytest.raises(ValueError, match='must be >= 0'):
        MLLMRec.from_data(tiny_data, item_layers=-1)
    with pytest.raises(ValueError, match="expected 'sum' or 'mean'"):
        MLLMRec.from_data(tiny_data, ui_layers=1, ui_combine='max')
    with pytest.raises(ValueError, match='TRAINING interactions'):
        MLLMRec(tiny_data['user'].x, tiny_data['item'].x, item_layers=0,
                ui_layers=1)
    with pytest.raises(ValueError, match='2 rows but there are 3 users'):
        MLLMRec(tiny_data['user'].x[:2], tiny_data['item'].x, item_layers=0,
                num_users=3)
    tiny_data['item'].x = torch.eye(3)
    with pytest.raises(ValueError, match='3 rows but there are 4 items'):
        MLLMRec.from_data(tiny_data)
    del tiny_data['item'].x
    with pytest.raises(ValueError, match=r"data\['item'\].x is missing"):
        MLLMRec.from_data(tiny_data)


@withDevice
def test_mllmrec_on_device(tiny_data, device):
    model = MLLMRec.from_data(tiny_data, hidden_channels=8, out_channels=2,
                              ui_layers=1).to(device)
    assert model.item_input.device.type == device.type
    user, pos, neg = (t.to(device) for t in TRIPLES)
    model.loss(user, pos, neg).backward()
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (3, 2) and item_emb.shape == (4, 2)
    top = model.recommend(user, k=2)
    assert top.shape == (5, 2)
