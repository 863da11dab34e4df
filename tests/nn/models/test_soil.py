import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.testing import withDevice

from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.metrics import Evaluator
from mllmrec_pyg.nn.conv import LightGCNConv
from mllmrec_pyg.nn.models import MODELS, SOIL, build_model
from mllmrec_pyg.nn.models.soil import (
    history_topk,
    info_nce_loss,
    interest_item_graph,
    second_order_edges,
    similarity_knn_graph,
)
from mllmrec_pyg.train import Trainer
from tests.nn.conftest import TRIPLES

# Four items, two modalities with simple cosines.  Modality A:
# i0 = (1, 0), i1 = (0, 1), i2 = (3, 4) / 5, i3 = (12, 5) / 13, so
# S01 = 0, S02 = .6, S03 = 12/13, S12 = .8, S13 = 5/13, S23 = 56/65.
# Modality B: i0 = (1, 0), i1 = (3, 4) / 5, i2 = (4, 3) / 5, i3 = (0, 1),
# so S01 = .6, S02 = .8, S03 = 0, S12 = .96, S13 = .8, S23 = .6.
FEAT_A = torch.tensor([[1., 0.], [0., 1.], [3., 4.], [12., 5.]])
FEAT_B = torch.tensor([[1., 0.], [3., 4.], [4., 3.], [0., 1.]])
# Three users: u0 = {i0}, u1 = {i1, i2}, u2 = {i0, i3} (u2 - i3 twice: a
# repeated interaction counts once).
HISTORY = torch.tensor([[0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 3, 3]])


def dense(index, weight, n):
    out = torch.zeros(n, n, dtype=torch.float64)
    out.index_put_((index[0], index[1]), weight.double(), accumulate=True)
    return out


def matrix_of(adj, weight, n):
    # An EdgeIndex buffer (row: source) back to matrix coordinates
    # (row receives).
    index = adj.as_tensor() if hasattr(adj, 'as_tensor') else adj
    return dense(index.flip(0), weight, n)


# ------------------------------------------------------------------ graphs


def test_similarity_knn_graph_exact():
    index, weight = similarity_knn_graph(FEAT_A, k=2)
    # Each item keeps itself (1) and its most similar item; row sums:
    # d0 = d3 = 25/13, d1 = 1.8, d2 = 121/65.
    d0, d1, d2 = 25 / 13, 1.8, 121 / 65
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[0, 0] = expected[3, 3] = 1 / d0
    expected[0, 3] = expected[3, 0] = (12 / 13) / d0
    expected[1, 1] = 1 / d1
    expected[1, 2] = 0.8 / math.sqrt(d1 * d2)
    expected[2, 2] = 1 / d2
    expected[2, 3] = (56 / 65) / math.sqrt(d2 * d0)
    assert index.size(1) == 8
    assert torch.allclose(dense(index, weight, 4), expected, atol=1e-6)
    empty_index, empty_weight = similarity_knn_graph(FEAT_A, k=0)
    assert empty_index.shape == (2, 0) and empty_weight.numel() == 0


def test_interest_item_graph_exact():
    index, weight = interest_item_graph(HISTORY, FEAT_A, num_users=3, k=2)
    # u0: scores S[0] = (1, 0, .6, 12/13) -> {i0, i3}: M00 += 1,
    #     M03 += 12/13.
    # u1: S[1] + S[2] = (.6, 1.8, 1.8, 81/65) -> {i1, i2}: M11 = M22 = 1,
    #     M12 = M21 = .8.
    # u2: S[0] + S[3] = (25/13, 5/13, 95/65, 25/13) -> {i0, i3}: M00 += 1,
    #     M03 += 12/13, M30 = 12/13, M33 = 1.
    # Row sums: d0 = 50/13, d1 = d2 = 1.8, d3 = 25/13.
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[0, 0] = 2 / (50 / 13)
    expected[0, 3] = (24 / 13) / math.sqrt(50 / 13 * 25 / 13)
    expected[3, 0] = (12 / 13) / math.sqrt(50 / 13 * 25 / 13)
    expected[3, 3] = 1 / (25 / 13)
    expected[1, 1] = expected[2, 2] = 1 / 1.8
    expected[1, 2] = expected[2, 1] = 0.8 / 1.8
    assert index.size(1) == 8
    assert torch.allclose(dense(index, weight, 4), expected, atol=1e-6)
    assert torch.allclose(dense(index, weight, 4)[0, 3],
                          torch.tensor(24 / math.sqrt(1250),
                                       dtype=torch.float64))
    assert interest_item_graph(HISTORY, FEAT_A, 3, k=0)[0].shape == (2, 0)


def test_second_order_edges_exact():
    index, weight = second_order_edges(HISTORY, [FEAT_A, FEAT_B],
                                       num_users=3, k=1)
    # P = S^A * S^B: P02 = .48, P12 = .768, P13 = 4/13, P23 = 33.6/65,
    # P01 = P03 = 0, diagonal 1.  Best item outside each history:
    # u0: P[0] -> i2 (.48); u1: P[1] + P[2] -> i3 (4/13 + 33.6/65 =
    # 53.6/65) over i0 (.48); u2: P[0] + P[3] -> i2 (.48 + 33.6/65 =
    # 64.8/65) over i1 (4/13).
    x = {(0, 2): 0.48, (1, 3): 53.6 / 65, (2, 2): 64.8 / 65}
    deg_user = {0: 0.48, 1: 53.6 / 65, 2: 64.8 / 65}
    deg_item = {2: 0.48 + 64.8 / 65, 3: 53.6 / 65}
    expected = torch.zeros(7, 7, dtype=torch.float64)
    for (u, i), value in x.items():
        norm = value / math.sqrt(deg_user[u] * deg_item[i])
        expected[u, 3 + i] = expected[3 + i, u] = norm
    assert index.size(1) == 6
    assert torch.allclose(dense(index, weight, 7), expected, atol=1e-6)
    assert expected[0, 5] == pytest.approx(math.sqrt(0.325))
    assert expected[1, 6] == pytest.approx(1.0)
    assert expected[2, 5] == pytest.approx(math.sqrt(0.675))


def test_history_topk_excludes_history_and_keeps_order():
    user, item, score = history_topk(
        torch.tensor([[0, 1, 1, 2, 2], [0, 1, 2, 0, 3]]), [FEAT_A, FEAT_B],
        num_users=4, k=2, exclude_history=True, block_elements=7)
    # User 3 has no history: no entry.  u1 has only two items left.
    assert user.tolist() == [0, 0, 1, 1, 2, 2]
    assert item.tolist() == [2, 1, 3, 0, 2, 1]
    assert torch.allclose(score, torch.tensor(
        [0.48, 0.0, 53.6 / 65, 0.48, 64.8 / 65, 4 / 13]), atol=1e-6)


def _official_interest(edge_index, x, num_users, k):
    # The official construction, dense and looping over users.
    z = x.double() / x.double().norm(dim=1, keepdim=True)
    sim = z @ z.t()
    interest = torch.zeros_like(sim)
    for u in range(num_users):
        items = edge_index[1][edge_index[0] == u].unique()
        if items.numel() == 0:
            continue
        cols = sim[items].sum(0).topk(k).indices
        interest[items.view(-1, 1), cols] += sim[items.view(-1, 1), cols]
    inv = interest.sum(1).pow(-0.5)
    inv[torch.isinf(inv)] = 0
    return inv.view(-1, 1) * interest * inv.view(1, -1)


def _official_second_order(edge_index, feats, num_users, k):
    sims = []
    for x in feats:
        z = x.double() / x.double().norm(dim=1, keepdim=True)
        sims.append(z @ z.t())
    prod = sims[0] * sims[1]
    num_items = prod.size(0)
    extra = torch.zeros(num_users, num_items, dtype=torch.float64)
    for u in range(num_users):
        items = edge_index[1][edge_index[0] == u].unique()
        if items.numel() == 0:
            continue
        score = prod[items].sum(0)
        score[items] = float('-inf')
        cols = score.topk(k).indices
        extra[u, cols] = score[cols]
    n = num_users + num_items
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[:num_users, num_users:] = extra
    adj[num_users:, :num_users] = extra.t()
    inv = adj.sum(1).pow(-0.5)
    inv[torch.isinf(inv)] = 0
    return inv.view(-1, 1) * adj * inv.view(1, -1)


def test_blocked_builds_match_dense_official_loops():
    generator = torch.Generator().manual_seed(0)
    num_users, num_items = 12, 15
    user = torch.randint(0, num_users - 1, (40, ), generator=generator)
    item = torch.randint(0, num_items, (40, ), generator=generator)
    edge_index = torch.stack([user, item])  # the last user has no history
    image = torch.rand(num_items, 6, generator=generator)
    text = torch.rand(num_items, 5, generator=generator)
    for block in (1, 30, 1 << 20):  # one column per block ... one block
        index, weight = interest_item_graph(edge_index, image, num_users, 4,
                                            block_elements=block)
        assert torch.allclose(dense(index, weight, num_items),
                              _official_interest(edge_index, image,
                                                 num_users, 4), atol=1e-5)
        index, weight = second_order_edges(edge_index, [image, text],
                                           num_users, 3, block_elements=block)
        assert torch.allclose(
            dense(index, weight, num_users + num_items),
            _official_second_order(edge_index, [image, text], num_users, 3),
            atol=1e-5)


def test_model_graphs_exact():
    model = SOIL(3, HISTORY, {'a': FEAT_A, 'b': FEAT_B}, knn_k=2, knn_i=2,
                 knn_a=1, embedding_dim=4)
    # Item graph of each modality: interest + k-NN, not renormalised.
    for m, x in enumerate((FEAT_A, FEAT_B)):
        expected = (dense(*interest_item_graph(HISTORY, x, 3, 2), 4)
                    + dense(*similarity_knn_graph(x, 2), 4))
        got = matrix_of(getattr(model, f'item_adj_{m}'),
                        getattr(model, f'item_weight_{m}'), 4)
        assert torch.allclose(got, expected, atol=1e-6)
    # Training graph: u0-i0, u1-i1, u1-i2, u2-i0, u2-i3, degrees u (1, 2, 2)
    # and i (2, 1, 1, 1); plus half the normalised second-order edges.
    r = torch.zeros(3, 4, dtype=torch.float64)
    r[0, 0] = 1 / math.sqrt(2)
    r[1, 1] = r[1, 2] = 1 / math.sqrt(2)
    r[2, 0], r[2, 3] = 0.5, 1 / math.sqrt(2)
    r[0, 2] += math.sqrt(0.325) / 2
    r[1, 3] += 0.5
    r[2, 2] += math.sqrt(0.675) / 2
    full = torch.zeros(7, 7, dtype=torch.float64)
    full[:3, 3:], full[3:, :3] = r, r.t()
    assert torch.allclose(matrix_of(model.ui_adj, model.ui_weight, 7), full,
                          atol=1e-6)
    # R' (item -> user edges only).
    user_rows = torch.zeros(7, 7, dtype=torch.float64)
    user_rows[:3, 3:] = r
    assert torch.allclose(matrix_of(model.iu_adj, model.iu_weight, 7),
                          user_rows, atol=1e-6)

    no_second = SOIL(3, HISTORY, {'a': FEAT_A}, knn_a=0, knn_i=0, knn_k=2)
    assert no_second.ui_adj.size(1) == 10
    assert torch.allclose(matrix_of(no_second.item_adj_0,
                                    no_second.item_weight_0, 4),
                          dense(*similarity_knn_graph(FEAT_A, 2), 4))


# ----------------------------------------------------------- forward, loss


def test_info_nce_exact():
    eye = torch.eye(2)
    # Logits [[2, 0], [0, 2]] at tau = 0.5: -log(e^2 / (e^2 + 1)) per row.
    assert info_nce_loss(eye, 2 * eye, 0.5).item() == pytest.approx(
        math.log1p(math.exp(-2.0)), rel=1e-6)
    # Rows (1, 0) and (1, 1) / sqrt 2 against themselves, tau = 1.
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    c = 1 / math.sqrt(2)
    expected = 0.5 * (math.log(math.e + math.exp(c)) - 1
                      + math.log(math.exp(c) + math.e) - 1)
    assert info_nce_loss(a, a, 1.0).item() == pytest.approx(expected,
                                                            rel=1e-6)


def test_info_nce_gradients():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 3, generator=generator, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(6, 3, generator=generator, dtype=torch.float64,
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: info_nce_loss(x, y, 0.3),
                                    (a, b))
    # Against the logsumexp form.
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t() / 0.3
    want = (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
    got = info_nce_loss(a, b, 0.3)
    assert torch.allclose(got, want)
    assert all(torch.allclose(g, w) for g, w in zip(
        torch.autograd.grad(got, (a, b)), torch.autograd.grad(want, (a, b)),
        strict=True))


def _model(**kwargs):
    torch.manual_seed(0)
    return SOIL(3, HISTORY, {'a': FEAT_A, 'b': FEAT_B}, knn_k=2, knn_i=2,
                knn_a=1, embedding_dim=4, **kwargs)


def test_propagate_matches_dense_equations():
    model = _model()
    n = 7
    a_ui = matrix_of(model.ui_adj, model.ui_weight, n).float()
    r = matrix_of(model.iu_adj, model.iu_weight, n)[:3, 3:].float()
    ego = torch.cat([model.user_embedding, model.item_embedding])
    content = (ego + a_ui @ ego + a_ui @ (a_ui @ ego)) / 3
    views = []
    for m in range(2):
        s = matrix_of(getattr(model, f'item_adj_{m}'),
                      getattr(model, f'item_weight_{m}'), 4).float()
        gate = torch.sigmoid(model.gates[m][0](
            model.projections[m](model.features[m])))
        h = s @ (model.item_embedding * gate)
        views.append(torch.cat([r @ h, h]))
    score = torch.cat([model.query(v) for v in views], dim=1)
    alpha = torch.softmax(score, dim=1)
    common = alpha[:, :1] * views[0] + alpha[:, 1:] * views[1]
    side = (views[0] + views[1] - common) / 3
    final, got_side, got_content = model.propagate()
    assert torch.allclose(got_content, content, atol=1e-6)
    assert torch.allclose(got_side, side, atol=1e-6)
    assert torch.allclose(final, content + side, atol=1e-6)
    user_emb, item_emb = model.embed()
    assert torch.allclose(torch.cat([user_emb, item_emb]), final)


def _conv_propagate(model):
    # The previous path: LightGCNConv over the EdgeIndex buffers at every
    # call (R' H_I through zero user rows).
    conv = LightGCNConv()
    num_users = model.num_users
    ego = torch.cat([model.user_embedding, model.item_embedding])
    content, h = ego, ego
    for _ in range(model.num_ui_layers):
        h = conv(h, model.ui_adj, model.ui_weight)
        content = content + h
    content = content / (model.num_ui_layers + 1)
    no_user = model.item_embedding.new_zeros(num_users, model.embedding_dim)
    views = []
    for m in range(len(model.features)):
        h = model.item_embedding * model.gates[m](
            model.projections[m](model.features[m]))
        for _ in range(model.num_item_layers):
            h = conv(h, getattr(model, f'item_adj_{m}'),
                     getattr(model, f'item_weight_{m}'))
        h_user = conv(torch.cat([no_user, h]), model.iu_adj,
                      model.iu_weight)[:num_users]
        views.append(torch.cat([h_user, h]))
    stacked = torch.stack(views)
    alpha = torch.softmax(model.query(stacked), dim=0)
    common = (alpha * stacked).sum(dim=0)
    side = (common + (stacked - common).sum(dim=0)) / (len(views) + 1)
    return content + side, side, content


def _dense_propagate(model):
    # The equations on dense float64 matrices of the graphs.
    n, num_users = model.num_users + model.num_items, model.num_users
    a_ui = matrix_of(model.ui_adj, model.ui_weight, n)
    r = matrix_of(model.iu_adj, model.iu_weight, n)[:num_users, num_users:]
    ego = torch.cat([model.user_embedding, model.item_embedding]).double()
    content, h = ego, ego
    for _ in range(model.num_ui_layers):
        h = a_ui @ h
        content = content + h
    content = content / (model.num_ui_layers + 1)
    views = []
    for m in range(len(model.features)):
        s = matrix_of(getattr(model, f'item_adj_{m}'),
                      getattr(model, f'item_weight_{m}'), model.num_items)
        h = (model.item_embedding * model.gates[m](
            model.projections[m](model.features[m]))).double()
        for _ in range(model.num_item_layers):
            h = s @ h
        views.append(torch.cat([r @ h, h]))
    stacked = torch.stack(views)
    dtype = model.item_embedding.dtype
    alpha = torch.softmax(model.query(stacked.to(dtype)).double(), dim=0)
    common = (alpha * stacked).sum(dim=0)
    side = (common + (stacked - common).sum(dim=0)) / (len(views) + 1)
    return content + side, side, content


def _outputs_and_grads(model, fn, seed=1):
    generator = torch.Generator().manual_seed(seed)
    outputs = fn(model)
    probes = [torch.randn(o.shape, generator=generator, dtype=torch.float64)
              for o in outputs]
    total = sum((o.double() * w).sum() for o, w in zip(outputs, probes,
                                                       strict=True))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(total, params)
    return [o.detach().double() for o in outputs], [g.double() for g in grads]


@pytest.mark.parametrize('layers', [(2, 1), (0, 0), (3, 2)])
def test_propagate_csr_equals_conv_and_dense_with_gradients(layers):
    num_ui_layers, num_item_layers = layers
    model = _model(num_ui_layers=num_ui_layers,
                   num_item_layers=num_item_layers)
    got, got_grads = _outputs_and_grads(model, SOIL.propagate)
    for reference in (_conv_propagate, _dense_propagate):
        want, want_grads = _outputs_and_grads(model, reference)
        for a, b in zip(got, want, strict=True):
            assert torch.allclose(a, b, atol=1e-6)
        assert len(got_grads) == len(want_grads) == 15
        for a, b in zip(got_grads, want_grads, strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def _reference_loss(model, user, pos, neg):
    # The loss as before: the InfoNCE terms with logsumexp, on rows of the
    # full final representation of the LightGCNConv path.
    final, side, content = _conv_propagate(model)
    pos, neg = pos + model.num_users, neg + model.num_users

    def nce(a, b, tau=model.temperature):
        logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t() / tau
        return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()

    u = final[user]
    bpr = -F.logsigmoid((u * final[pos]).sum(1) - (u * final[neg]).sum(1))
    return (bpr.mean() + model.view_cl_weight
            * (nce(side[pos], content[pos]) + nce(side[user], content[user]))
            + model.user_item_cl_weight
            * (nce(u, content[pos]) + nce(u, side[pos])))


@pytest.mark.parametrize('modalities', [('a', ), ('a', 'b')])
def test_loss_and_gradients_equal_conv_path(modalities):
    feats = {'a': FEAT_A, 'b': FEAT_B}
    torch.manual_seed(0)
    model = SOIL(3, HISTORY, {m: feats[m] for m in modalities}, knn_k=2,
                 knn_i=2, knn_a=1, embedding_dim=4, view_cl_weight=0.3,
                 user_item_cl_weight=0.7)
    user = torch.tensor([0, 1, 2, 2, 1])
    pos = torch.tensor([0, 1, 0, 3, 2])
    neg = torch.tensor([3, 0, 1, 2, 3])
    params = [p for p in model.parameters() if p.requires_grad]
    loss = model.loss(user, pos, neg)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    want = _reference_loss(model, user, pos, neg)
    want_grads = torch.autograd.grad(want, params, allow_unused=True)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    for param, got, expected in zip(params, grads, want_grads, strict=True):
        assert expected is not None
        if got is None:
            # One modality: the attention query has no effect (softmax over
            # one), its gradient was exactly zero.
            assert len(modalities) == 1
            assert any(param is q for q in model.query.parameters())
            assert expected.abs().max() == 0
        else:
            assert torch.allclose(got, expected, atol=1e-6)
    # And the outputs: s = h^1 / 2 exactly for one modality.
    for got, expected in zip(model.propagate(), _conv_propagate(model),
                             strict=True):
        assert torch.allclose(got, expected, atol=1e-6)


def test_propagate_builds_graph_arrays_once_and_follows_the_buffers():
    model = _model(num_item_layers=2)
    assert model._graph_cache is None
    model.propagate()
    graphs = model._graph_cache[1]
    model.loss(*TRIPLES).backward()
    assert model._graph_cache[1] is graphs  # reused
    # Converting the module replaces the buffers: the arrays are rebuilt,
    # and the float64 model agrees with the dense float64 equations.
    model = model.double()
    final, side, content = model.propagate()
    assert model._graph_cache[1] is not graphs
    assert final.dtype == torch.float64
    want = _dense_propagate(model)
    for a, b in zip((final, side, content), want, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    # state_dict carries no graph arrays (they are not buffers).
    assert not any('cache' in key for key in model.state_dict())


def test_loss_terms_match_direct_computation():
    model = _model(view_cl_weight=0.3, user_item_cl_weight=0.7)
    user = torch.tensor([0, 1, 2, 2])
    pos = torch.tensor([0, 1, 0, 3])
    neg = torch.tensor([3, 0, 1, 2])
    terms = model.loss_terms(user, pos, neg)
    final, side, content = (t.detach().double() for t in model.propagate())

    def nce(a, b, tau=0.2):
        cos = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
        return -torch.log(torch.exp(cos.diagonal() / tau)
                          / torch.exp(cos / tau).sum(dim=1)).mean()

    u, i, j = final[user], final[3 + pos], final[3 + neg]
    bpr = -torch.log(torch.sigmoid((u * i).sum(1) - (u * j).sum(1))).mean()
    view = nce(side[3 + pos], content[3 + pos]) + nce(side[user],
                                                       content[user])
    user_item = nce(u, content[3 + pos]) + nce(u, side[3 + pos])
    assert terms['bpr'].item() == pytest.approx(bpr.item(), rel=1e-5)
    assert terms['view_cl'].item() == pytest.approx(view.item(), rel=1e-5)
    assert terms['user_item_cl'].item() == pytest.approx(user_item.item(),
                                                         rel=1e-5)
    loss = model.loss(user, pos, neg)
    assert loss.item() == pytest.approx(
        (bpr + 0.3 * view + 0.7 * user_item).item(), rel=1e-5)
    loss.backward()
    assert model.user_embedding.grad is not None
    assert model.features[0].grad is not None  # the tables are trained


def test_forward_and_embed_shapes():
    model = _model()
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (3, 4) and item_emb.shape == (4, 4)
    score = model(torch.tensor([0, 2]), torch.tensor([1, 3]))
    assert score.shape == (2, )
    assert torch.allclose(score, (user_emb[[0, 2]] * item_emb[[1, 3]]).sum(1))
    top = model.recommend(torch.tensor([0, 1]), k=2)
    assert top.shape == (2, 2)

    frozen = _model(freeze_features=True)
    frozen.loss(*TRIPLES).backward()
    assert frozen.features[0].grad is None
    assert all(not p.requires_grad for p in frozen.features)


# --------------------------------------------------------------- from_data


def test_from_data_text_and_image(tiny_data):
    del tiny_data['item'].x
    tiny_data['item'].text_feat = FEAT_A
    tiny_data['item'].image_feat = FEAT_B
    model = SOIL.from_data(tiny_data, embedding_dim=8, knn_k=2, knn_i=2)
    assert model.modalities == ['image_feat', 'text_feat']
    assert str(model) == (
        "SOIL(3 users, 4 items, modalities=[image_feat, text_feat], "
        "embedding_dim=8, num_ui_layers=2, num_item_layers=1, knn_k=2, "
        "knn_i=2, knn_a=2, item_graph='own', view_cl_weight=0.1, "
        "user_item_cl_weight=0.01)")
    # Only the 5 training interactions: u0-{i0, i1}, u1-i1, u2-{i2, i3}.
    expected = interest_item_graph(torch.tensor([[0, 0, 1, 2, 2],
                                                 [0, 1, 1, 2, 3]]),
                                   FEAT_B, 3, 2)
    got = matrix_of(model.item_adj_0, model.item_weight_0, 4)
    assert torch.allclose(got, dense(*expected, 4)
                          + dense(*similarity_knn_graph(FEAT_B, 2), 4),
                          atol=1e-6)
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (3, 8) and item_emb.shape == (4, 8)
    assert model.loss(*TRIPLES).item() > 0


def test_from_data_x_only(tiny_data):
    model = SOIL.from_data(tiny_data, knn_k=2, knn_i=1, knn_a=1)
    assert model.modalities == ['x']
    assert model.embedding_dim == 64
    assert model.features[0].shape == (4, 4)
    assert model.embed()[1].shape == (4, 64)
    assert type(build_model('soil', tiny_data)) is SOIL
    assert MODELS['soil'] is SOIL


def test_from_data_item_graph_plug(tiny_data):
    # item_graph='data': the refined graph i0 <- i1 (.5), i1 <- i0 (.5),
    # i2 <- i3 (.25) replaces the k-NN graph of every modality.
    given = torch.zeros(4, 4, dtype=torch.float64)
    given[0, 1] = given[1, 0] = 0.5
    given[2, 3] = 0.25
    model = SOIL.from_data(tiny_data, item_graph='data', knn_i=0)
    assert "item_graph='data'" in str(model)
    assert torch.allclose(matrix_of(model.item_adj_0, model.item_weight_0, 4),
                          given)
    model = SOIL.from_data(tiny_data, item_graph='data', knn_i=2)
    interest = dense(*interest_item_graph(
        torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 2, 3]]), torch.eye(4), 3,
        2), 4)
    assert torch.allclose(matrix_of(model.item_adj_0, model.item_weight_0, 4),
                          given + interest, atol=1e-6)
    # The same graph passed directly.
    store = tiny_data['item', 'similar', 'item']
    direct = SOIL.from_data(tiny_data, item_edge_index=store.edge_index,
                            item_edge_weight=store.edge_weight, knn_i=2)
    assert "item_graph='given'" in str(direct)
    assert torch.allclose(matrix_of(direct.item_adj_0,
                                    direct.item_weight_0, 4),
                          given + interest, atol=1e-6)
    # Without weights the binary graph is normalised by its row sums (item
    # i3 has none: its entry vanishes).
    binary = SOIL.from_data(tiny_data, item_edge_index=store.edge_index,
                            knn_i=0)
    expected = given.clone()
    expected[0, 1] = expected[1, 0] = 1.0
    expected[2, 3] = 0.0
    assert torch.allclose(matrix_of(binary.item_adj_0,
                                    binary.item_weight_0, 4), expected)


def test_from_data_errors(tiny_data):
    del tiny_data['item'].x
    with pytest.raises(ValueError, match="SOIL needs item features: "
                       "data\\['item'\\] has none of image_feat, text_feat, "
                       "audio_feat, x"):
        SOIL.from_data(tiny_data)
    tiny_data['item'].audio_feat = torch.ones(5, 2)
    with pytest.raises(ValueError, match='audio_feat has 5 rows but there '
                       'are 4 items'):
        SOIL.from_data(tiny_data)
    tiny_data['item'].audio_feat = torch.rand(4, 2)
    with pytest.raises(ValueError, match='do not also pass'):
        SOIL.from_data(tiny_data, item_graph='data',
                       item_edge_index=torch.tensor([[0], [1]]))
    del tiny_data['item', 'similar', 'item']
    with pytest.raises(ValueError, match="item_graph='data' needs"):
        SOIL.from_data(tiny_data, item_graph='data')
    with pytest.raises(ValueError, match='at least one item modality'):
        SOIL(3, HISTORY, {})
    with pytest.raises(ValueError, match="Unknown item_graph 'refined'"):
        SOIL(3, HISTORY, {'a': FEAT_A}, item_graph='refined')
    with pytest.raises(ValueError, match='read by SOIL.from_data'):
        SOIL(3, HISTORY, {'a': FEAT_A}, item_graph='data')
    with pytest.raises(ValueError, match="'knn_a' must be >= 0"):
        SOIL(3, HISTORY, {'a': FEAT_A}, knn_a=-1)
    with pytest.raises(ValueError, match="'b' has 3 rows"):
        SOIL(3, HISTORY, {'a': FEAT_A, 'b': FEAT_B[:3]})
    with pytest.raises(ValueError, match='out of range'):
        SOIL(2, HISTORY, {'a': FEAT_A})


@withDevice
def test_soil_device_agnostic(device):
    model = SOIL(3, HISTORY.to(device), {'a': FEAT_A.to(device),
                                         'b': FEAT_B.to(device)},
                 knn_k=2, knn_i=2, knn_a=1, embedding_dim=4)
    reference = _model().to(device)
    assert model.ui_weight.device == reference.ui_weight.device
    assert torch.allclose(model.ui_weight, reference.ui_weight)
    loss = reference.loss(*(t.to(device) for t in TRIPLES))
    loss.backward()
    assert loss.device.type == torch.device(device).type


# ----------------------------------------------------------------- training


def test_training_beats_popularity():
    data = load_dataset('synthetic:users=60,items=40,seed=1')
    generator = torch.Generator().manual_seed(0)
    data['item'].x = torch.randn(40, 16, generator=generator)
    evaluator = Evaluator(data, ks=(20, ))
    popularity = evaluator.popularity.float()
    pop_recall = evaluator.evaluate(
        (torch.ones(60, 1), torch.log1p(popularity).view(-1, 1)),
        splits=('val', ))['val']['recall@20']

    torch.manual_seed(0)
    model = SOIL.from_data(data)
    trainer = Trainer(model, data, max_epochs=5, lr=0.01, batch_size=128,
                      progress=False)
    trainer.fit()
    best = max(row['val_recall@20'] for row in trainer.history)
    assert best > pop_recall + 0.1, (best, pop_recall)
