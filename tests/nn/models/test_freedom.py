import math

import pytest
import torch
from torch_geometric.testing import withDevice

from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.metrics import Evaluator
from mllmrec_pyg.nn.models import FREEDOM, MODELS, build_model
from mllmrec_pyg.nn.models.freedom import (
    knn_item_graph,
    mixed_item_graph,
    modality_weights_default,
    pruning_weights,
    row_degree_normalize,
    sample_without_replacement,
)
from mllmrec_pyg.train import Trainer
from tests.nn.conftest import TRIPLES

# Four items in two modalities.  Text: i0 ~ i1 and i2 ~ i3; image: i0 ~ i2
# and i1 ~ i3 (cosine), so with k = 2 (self included) every item has itself
# and one neighbour per modality.
TEXT = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
IMAGE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])


def dense(edge_index, edge_weight, n):
    out = torch.zeros(n, n, dtype=edge_weight.dtype)
    out.index_put_((edge_index[0], edge_index[1]), edge_weight, accumulate=True)
    return out


def sym_norm_bipartite(edges, num_users, num_items):
    r"""Dense D^-1/2 [[0, R], [R^T, 0]] D^-1/2 of unique user-item edges."""
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edges[0], edges[1] + num_users] = 1.0
    a[edges[1] + num_users, edges[0]] = 1.0
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return inv.view(-1, 1) * a * inv.view(1, -1)


def reference_embed(model, adj):
    r"""FREEDOM's forward, dense and in float64, from the model's parameters."""
    s = dense(_matrix_graph(model), model.item_adj_weight.double(),
              model.num_items)
    h = model.item_embedding.detach().double()
    for _ in range(model.num_mm_layers):
        h = s @ h
    x = torch.cat([model.user_embedding, model.item_embedding]).detach().double()
    layers, cur = [x], x
    for _ in range(model.num_ui_layers):
        cur = adj @ cur
        layers.append(cur)
    out = torch.stack(layers).mean(0)
    return out[:model.num_users], out[model.num_users:] + h


def _matrix_graph(model):
    # item_adj holds the flow (source = column j, target = row i).
    return model.item_adj.as_tensor().flip(0)


# ---------------------------------------------------------------- item graph


def test_knn_item_graph_self_included_and_mean_normalisation():
    edge_index, weight = knn_item_graph(TEXT, k=2)
    # Sorted by row, then similarity: the item itself (similarity 1) first.
    assert edge_index.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3],
                                   [0, 1, 1, 0, 2, 3, 3, 2]]
    # Row sums are k = 2, so every entry is 1/sqrt(2 * 2) = 1/2: a mean.
    assert weight.tolist() == [0.5] * 8
    # k = 3 gives exactly 1/3 (1/sqrt(9)).
    edge_index, weight = knn_item_graph(TEXT, k=3)
    assert edge_index.size(1) == 12
    assert torch.equal(weight, torch.full((12, ), 1.0) / 3.0)
    assert torch.equal(torch.bincount(edge_index[0]), torch.full((4, ), 3))
    # k above the catalogue: every item, 1/4 each.
    edge_index, weight = knn_item_graph(TEXT, k=10)
    assert edge_index.size(1) == 16 and weight.tolist() == [0.25] * 16


def test_knn_item_graph_duplicates_and_zero_rows():
    # i0 and i1 are identical: each still keeps itself (forced) plus the
    # other; the zero row i3 selects nothing and is never selected.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    edge_index, weight = knn_item_graph(x, k=2)
    assert edge_index.tolist() == [[0, 0, 1, 1, 2, 2], [0, 1, 1, 0, 2, 0]]
    assert weight.tolist() == [0.5] * 6


def test_row_degree_normalize():
    # Rows 0 and 1 have 2 and 1 entries; column 2 has no row (weight 0).
    edge_index = torch.tensor([[0, 0, 1], [1, 2, 0]])
    weight = row_degree_normalize(edge_index, 3)
    assert weight.tolist() == pytest.approx([1 / math.sqrt(2), 0.0,
                                             1 / math.sqrt(2)], abs=1e-7)


def test_mixed_item_graph_exact():
    edge_index, weight = mixed_item_graph([TEXT, IMAGE], [0.9, 0.1], k=2)
    expected = torch.zeros(4, 4)
    expected.fill_diagonal_(0.5)  # 0.9 / 2 + 0.1 / 2
    for i, j in [(0, 1), (1, 0), (2, 3), (3, 2)]:
        expected[i, j] = 0.45  # text neighbours, 0.9 / 2
    for i, j in [(0, 2), (2, 0), (1, 3), (3, 1)]:
        expected[i, j] = 0.05  # image neighbours, 0.1 / 2
    torch.testing.assert_close(dense(edge_index, weight, 4), expected,
                               rtol=0, atol=1e-7)
    assert edge_index.size(1) == 12  # coalesced: 4 self-loops, 8 others
    # Every row sums to 1: a weighted mean over the neighbours.
    torch.testing.assert_close(dense(edge_index, weight, 4).sum(1),
                               torch.ones(4))
    with pytest.raises(ValueError, match='one weight per modality'):
        mixed_item_graph([TEXT], [0.5, 0.5])


def test_modality_weights_default_rule():
    assert modality_weights_default(['text_feat']) == [1.0]
    assert modality_weights_default(['text_feat', 'image_feat']) == [0.9, 0.1]
    assert modality_weights_default(['image_feat', 'text_feat'],
                                    image_weight=0.3) == [0.3, 0.7]
    assert modality_weights_default(['text_feat', 'image_feat', 'audio_feat']) \
        == pytest.approx([0.45, 0.1, 0.45])
    assert modality_weights_default(['text_feat', 'x', 'audio_feat']) \
        == pytest.approx([1 / 3] * 3)


def test_model_item_graph_matches_builder(tiny_data):
    tiny_data['item'].text_feat = TEXT
    tiny_data['item'].image_feat = IMAGE
    del tiny_data['item'].x
    model = FREEDOM.from_data(tiny_data, knn_k=2, embedding_dim=4,
                              feat_embed_dim=4)
    assert model.modalities == ['text_feat', 'image_feat']
    assert model.modality_weights == [0.9, 0.1]
    got = dense(_matrix_graph(model), model.item_adj_weight, 4)
    want = dense(*mixed_item_graph([TEXT, IMAGE], [0.9, 0.1], k=2), 4)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # Explicit weights, by name.
    model = FREEDOM.from_data(tiny_data, knn_k=2, embedding_dim=4,
                              feat_embed_dim=4,
                              modality_weights={'image_feat': 1.0,
                                                'text_feat': 0.0})
    got = dense(_matrix_graph(model), model.item_adj_weight, 4)
    torch.testing.assert_close(got, dense(*knn_item_graph(IMAGE, 2), 4))
    with pytest.raises(ValueError, match='one weight per modality'):
        FREEDOM.from_data(tiny_data, modality_weights={'image_feat': 1.0})
    # A subset of the modalities.
    model = FREEDOM.from_data(tiny_data, knn_k=2, modalities=['image_feat'])
    assert model.modalities == ['image_feat'] and model.modality_weights == [1.0]
    assert list(model.projections) == ['image_feat']


def test_given_item_graph(tiny_data):
    # item_graph='data' takes data['item', 'similar', 'item'] as given.
    model = FREEDOM.from_data(tiny_data, item_graph='data', embedding_dim=4,
                              feat_embed_dim=4)
    assert model.item_graph == 'data' and model.modality_weights is None
    got = dense(_matrix_graph(model), model.item_adj_weight, 4)
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[1, 0] = 0.5
    expected[2, 3] = 0.25
    assert torch.equal(got, expected)
    # The constructor takes a graph too; unweighted, it is row-normalised.
    model = FREEDOM(3, TRIPLES[0].new_tensor([[0, 1], [1, 1]]),
                    {'x': torch.eye(4)},
                    item_edge_index=torch.tensor([[0, 0, 1], [1, 2, 0]]))
    assert model.item_graph == 'data'
    got = dense(_matrix_graph(model), model.item_adj_weight, 4)
    assert got[0, 1].item() == pytest.approx(1 / math.sqrt(2))
    assert got[0, 2].item() == 0.0  # item 2 has no row
    assert got[1, 0].item() == pytest.approx(1 / math.sqrt(2))
    del tiny_data['item', 'similar', 'item']
    with pytest.raises(ValueError, match="no \\('item', 'similar', 'item'\\)"):
        FREEDOM.from_data(tiny_data, item_graph='data')
    with pytest.raises(ValueError, match='needs the item graph'):
        FREEDOM(3, torch.tensor([[0], [1]]), {'x': torch.eye(4)},
                item_graph='data')
    with pytest.raises(ValueError, match="Unknown item_graph 'mine'"):
        FREEDOM(3, torch.tensor([[0], [1]]), {'x': torch.eye(4)},
                item_graph='mine')


# ------------------------------------------------------------------ pruning


def test_pruning_weights_exact(tiny_data):
    model = FREEDOM.from_data(tiny_data, embedding_dim=4, feat_embed_dim=4)
    # Unique training edges u0-i0, u0-i1, u1-i1, u2-i2, u2-i3: d_u = (2, 1, 2),
    # d_i = (1, 2, 1, 1).
    assert model.train_edges.tolist() == [[0, 0, 1, 2, 2], [0, 1, 1, 2, 3]]
    r2 = 1 / math.sqrt(2)
    assert model.prune_weight.tolist() == pytest.approx([r2, 0.5, r2, r2, r2])
    # Repeated interactions count once.
    edges = torch.tensor([[0, 0, 0], [1, 1, 2]])
    assert pruning_weights(torch.unique(edges, dim=1), 1, 3).tolist() == \
        pytest.approx([r2, r2])


@pytest.mark.parametrize('dropout,keep', [(0.6, 2), (0.7, 1), (0.5, 2),
                                          (0.2, 4), (0.8, 0), (0.0, 5)])
def test_kept_edge_count(tiny_data, dropout, keep):
    model = FREEDOM.from_data(tiny_data, dropout=dropout, embedding_dim=4,
                              feat_embed_dim=4)
    # int(E * (1 - dropout)) as the official code, float rounding included
    # (5 * (1 - 0.8) = 0.999...: no edge is kept).
    assert model.num_keep == int(5 * (1.0 - dropout)) == keep
    kept = model.resample()
    assert kept.size(1) == (5 if dropout == 0 else keep)
    assert torch.unique(kept, dim=1).size(1) == kept.size(1)  # no repeats
    # Training runs even on an empty pruned graph.
    model.train()
    assert torch.isfinite(model.loss(*TRIPLES))


def _inclusion_probabilities(p, k):
    r"""Exact inclusion probabilities of successive sampling of k = 1 or 2
    items with probabilities p, without replacement."""
    if k == 1:
        return p
    out = p.clone()
    for e in range(p.numel()):
        for f in range(p.numel()):
            if f != e:
                out[e] += p[f] * p[e] / (1 - p[f])
    return out


@pytest.mark.parametrize('k', [1, 2])
def test_sampler_law(tiny_data, k):
    model = FREEDOM.from_data(tiny_data, embedding_dim=4, feat_embed_dim=4)
    weight = model.prune_weight
    p = (weight / weight.sum()).double()
    generator = torch.Generator().manual_seed(0)
    draws = 10000
    counts = torch.zeros(weight.numel(), dtype=torch.float64)
    for _ in range(draws):
        idx = sample_without_replacement(weight, k, generator)
        assert idx.numel() == k and idx.unique().numel() == k
        counts[idx] += 1
    expected = _inclusion_probabilities(p, k)
    # 10000 draws: standard errors below 0.005.
    torch.testing.assert_close(counts / draws, expected, rtol=0, atol=0.02)
    # The high-degree edge u0-i1 (d_u d_i = 4) is kept least often.
    assert int(counts.argmin()) == 1


def test_model_pruning_law(tiny_data):
    # The model's own draws (dropout 0.7: one edge of five) follow
    # P(keep) = w / sum(w), w = 1/sqrt(d_u d_i).
    model = FREEDOM.from_data(tiny_data, dropout=0.7, embedding_dim=4,
                              feat_embed_dim=4, seed=3)
    counts = torch.zeros(5)
    edges = model.train_edges.t().tolist()
    draws = 1500
    for _ in range(draws):
        kept = model.resample()
        counts[edges.index(kept[:, 0].tolist())] += 1
    r2 = 1 / math.sqrt(2)
    expected = torch.tensor([r2, 0.5, r2, r2, r2])
    expected = expected / expected.sum()
    # Standard errors below 0.011.
    torch.testing.assert_close(counts / draws, expected, rtol=0, atol=0.04)


def test_same_seed_prunes_identically(tiny_data):
    def run(seed):
        model = FREEDOM.from_data(tiny_data, dropout=0.6, seed=seed,
                                  embedding_dim=4, feat_embed_dim=4)
        torch.manual_seed(seed + 100)  # the global RNG plays no part
        return [model.resample().tolist() for _ in range(10)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_pruned_graph_normalisation_and_eval_uses_full_graph(tiny_data):
    model = FREEDOM.from_data(tiny_data, dropout=0.5, embedding_dim=4,
                              feat_embed_dim=4)
    kept = model.resample()
    assert kept.size(1) == 2
    # The pruned graph is renormalised with its own degrees.
    pruned = sym_norm_bipartite(kept, 3, 4)
    index, weight = model._training_graph()
    torch.testing.assert_close(dense(index.as_tensor().flip(0), weight.double(), 7),
                               pruned)
    full = sym_norm_bipartite(model.train_edges, 3, 4)

    model.train()
    user_emb, item_emb = model.embed()
    ref_u, ref_i = reference_embed(model, pruned)
    torch.testing.assert_close(user_emb.double(), ref_u, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(item_emb.double(), ref_i, rtol=1e-5, atol=1e-6)

    model.eval()
    user_emb, item_emb = model.embed()
    ref_u, ref_i = reference_embed(model, full)
    torch.testing.assert_close(user_emb.double(), ref_u, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(item_emb.double(), ref_i, rtol=1e-5, atol=1e-6)
    # Evaluation does not draw.
    assert torch.equal(model.pruned_edge_index, kept)


def test_dropout_zero_trains_on_full_graph(tiny_data):
    model = FREEDOM.from_data(tiny_data, dropout=0.0, embedding_dim=4,
                              feat_embed_dim=4)
    model.train()
    train_u, train_i = model.embed()
    model.eval()
    eval_u, eval_i = model.embed()
    assert torch.equal(train_u, eval_u) and torch.equal(train_i, eval_i)


def test_repruning_once_per_epoch(tiny_data):
    # 5 training edges, batch_size 2: 3 batches per epoch.
    model = FREEDOM.from_data(tiny_data, dropout=0.6, batch_size=2, seed=5,
                              embedding_dim=4, feat_embed_dim=4)
    reference = FREEDOM.from_data(tiny_data, dropout=0.6, seed=5,
                                  embedding_dim=4, feat_embed_dim=4)
    assert model.num_batches_per_epoch == 3
    epochs = [reference.resample() for _ in range(3)]
    calls = []
    resample = model.resample
    model.resample = lambda: calls.append(model._batches) or resample()
    model.train()
    seen = []
    for _ in range(9):
        model.loss(*TRIPLES)
        seen.append(model.pruned_edge_index)
    for batch, kept in enumerate(seen):
        assert torch.equal(kept, epochs[batch // 3])
    assert len(calls) == 3  # one draw per epoch, not per batch
    # Evaluation-mode losses neither count nor draw.
    model.eval()
    model.loss(*TRIPLES)
    assert model._batches == 9 and len(calls) == 3
    # batch_size=None: never by itself.
    manual = FREEDOM.from_data(tiny_data, dropout=0.6, batch_size=None,
                               embedding_dim=4, feat_embed_dim=4)
    assert manual.num_batches_per_epoch is None
    manual.train()
    manual.loss(*TRIPLES)
    first = manual.pruned_edge_index
    for _ in range(10):
        manual.loss(*TRIPLES)
    assert torch.equal(manual.pruned_edge_index, first)


def test_state_dict_restores_pruning(tiny_data):
    kwargs = dict(dropout=0.6, batch_size=2, seed=11, embedding_dim=4,
                  feat_embed_dim=4)
    model = FREEDOM.from_data(tiny_data, **kwargs)
    model.train()
    for _ in range(4):  # into the second epoch
        model.loss(*TRIPLES)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert '_extra_state' in state
    other = FREEDOM.from_data(tiny_data, **dict(kwargs, seed=0))
    other.load_state_dict(state)
    assert torch.equal(other.pruned_edge_index, model.pruned_edge_index)
    assert other._batches == 4
    other.train()
    for _ in range(6):
        model.loss(*TRIPLES)
        other.loss(*TRIPLES)
        assert torch.equal(other.pruned_edge_index, model.pruned_edge_index)
    # Before any draw: nothing is redrawn at load.
    fresh = FREEDOM.from_data(tiny_data, **kwargs)
    again = FREEDOM.from_data(tiny_data, **kwargs)
    again.load_state_dict(fresh.state_dict())
    assert again.pruned_edge_index is None
    assert torch.equal(again.resample(), fresh.resample())


# --------------------------------------------------------------------- loss


def test_loss_matches_direct_computation(tiny_data):
    tiny_data['item'].image_feat = IMAGE
    model = FREEDOM.from_data(tiny_data, knn_k=2, embedding_dim=4,
                              feat_embed_dim=4, reg_weight=0.3, dropout=0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    assert model.modalities == ['image_feat', 'x']
    user, pos, neg = TRIPLES
    loss = model.loss(user, pos, neg)

    full = sym_norm_bipartite(model.train_edges, 3, 4)
    user_emb, item_emb = reference_embed(model, full)
    u = user_emb[user]

    def bpr(pos_emb, neg_emb):
        diff = (u * pos_emb).sum(-1) - (u * neg_emb).sum(-1)
        return -torch.log(torch.sigmoid(diff)).mean()

    expected = bpr(item_emb[pos], item_emb[neg])
    for name in model.modalities:
        lin = model.projections[name]
        f = model.features[name].detach().double()
        proj = f @ lin.weight.detach().double().t() + lin.bias.detach().double()
        expected = expected + 0.3 * bpr(proj[pos], proj[neg])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    # reg_weight=0: BPR alone; the raw features are trainable parameters.
    model.reg_weight = 0.0
    assert model.loss(user, pos, neg).item() == pytest.approx(
        bpr(item_emb[pos], item_emb[neg]).item(), rel=1e-5)
    model.reg_weight = 0.3
    model.loss(user, pos, neg).backward()
    assert all(model.features[n].grad is not None for n in model.modalities)
    frozen = FREEDOM.from_data(tiny_data, freeze_features=True)
    assert not any(p.requires_grad for p in frozen.features.values())


def test_loss_gradients_reach_item_graph_branch(tiny_data):
    model = FREEDOM.from_data(tiny_data, knn_k=2, embedding_dim=4,
                              feat_embed_dim=4, dropout=0.6)
    model.train()
    model.loss(*TRIPLES).backward()
    assert model.user_embedding.grad is not None
    assert model.item_embedding.grad.abs().sum() > 0


# ------------------------------------------------------- shapes, from_data


def test_forward_embed_shapes_and_repr(tiny_data):
    model = FREEDOM.from_data(tiny_data, embedding_dim=8, feat_embed_dim=8)
    model.eval()
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (3, 8) and item_emb.shape == (4, 8)
    user, item = torch.tensor([0, 2, 1]), torch.tensor([3, 0, 1])
    score = model(user, item)
    assert score.shape == (3, )
    torch.testing.assert_close(score, (user_emb[user] * item_emb[item]).sum(-1))
    top = model.recommend(torch.tensor([0, 1]), k=2)
    assert top.shape == (2, 2)
    assert str(model) == ("FREEDOM(3 users, 4 items, modalities=['x'], "
                          "embedding_dim=8, knn_k=10, item_graph=own, "
                          "dropout=0.8, reg_weight=0.0001)")
    state = model.state_dict()
    assert set(state) == {'user_embedding', 'item_embedding', '_extra_state',
                          'features.x', 'projections.x.weight',
                          'projections.x.bias'}


def test_from_data_modalities(tiny_data):
    # x only.
    model = FREEDOM.from_data(tiny_data)
    assert model.modalities == ['x'] and model.features['x'].shape == (4, 4)
    # text_feat + image_feat (+ x, + audio_feat): all, in FREEDOM_FEATURES order.
    tiny_data['item'].text_feat = TEXT
    tiny_data['item'].image_feat = IMAGE
    model = FREEDOM.from_data(tiny_data, knn_k=2)
    assert model.modalities == ['text_feat', 'image_feat', 'x']
    assert model.modality_weights == pytest.approx([0.45, 0.1, 0.45])
    tiny_data['item'].audio_feat = torch.randn(4, 3)
    model = FREEDOM.from_data(tiny_data, knn_k=2)
    assert model.modalities == ['text_feat', 'image_feat', 'audio_feat', 'x']
    assert sum(model.modality_weights) == pytest.approx(1.0)
    # build_model knows it.
    assert MODELS['freedom'] is FREEDOM
    model = build_model('freedom', tiny_data, dropout=0.9, reg_weight=0.0)
    assert isinstance(model, FREEDOM) and model.dropout == 0.9


def test_from_data_errors(tiny_data):
    del tiny_data['item'].x
    with pytest.raises(ValueError, match='FREEDOM needs item features: '
                       "data\\['item'\\].text_feat, .image_feat, .audio_feat, "
                       '.x are all missing'):
        FREEDOM.from_data(tiny_data)
    tiny_data['item'].x = torch.ones(5, 2)
    with pytest.raises(ValueError, match='wrong number of rows'):
        FREEDOM.from_data(tiny_data)
    features = {'x': torch.eye(4)}
    edges = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match='at least one item modality'):
        FREEDOM(3, edges, {})
    with pytest.raises(ValueError, match="'dropout' must be in"):
        FREEDOM(3, edges, features, dropout=1.0)
    with pytest.raises(ValueError, match="'feat_embed_dim'"):
        FREEDOM(3, edges, features, feat_embed_dim=32)
    with pytest.raises(ValueError, match='not among the given features'):
        FREEDOM(3, edges, features, modalities=['image_feat'])


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
    model = FREEDOM.from_data(data, batch_size=128, seed=0)
    calls = []
    resample = model.resample
    model.resample = lambda: calls.append(model._batches) or resample()
    trainer = Trainer(model, data, max_epochs=5, lr=0.01, batch_size=128,
                      progress=False)
    trainer.fit()
    best = max(row['val_recall@20'] for row in trainer.history)
    assert best > pop_recall + 0.1, (best, pop_recall)
    # One pruning per epoch, counted from the trainer's batches (then one
    # redraw when the best epoch's state is loaded back).
    nb = model.num_batches_per_epoch
    assert nb == math.ceil(604 / 128) == 5
    assert calls[:5] == [1, nb, 2 * nb, 3 * nb, 4 * nb]


@withDevice
def test_freedom_on_device_equals_cpu(tiny_data, device):
    cpu = FREEDOM.from_data(tiny_data, dropout=0.5, seed=3, embedding_dim=4,
                            feat_embed_dim=4, reg_weight=1e-3)
    dev = FREEDOM.from_data(tiny_data, dropout=0.5, seed=3, embedding_dim=4,
                            feat_embed_dim=4, reg_weight=1e-3)
    dev.load_state_dict(cpu.state_dict())
    dev = dev.to(device)
    user, pos, neg = TRIPLES
    loss_cpu = cpu.loss(user, pos, neg)
    loss_dev = dev.loss(user.to(device), pos.to(device), neg.to(device))
    assert loss_dev.device.type == device.type
    # The pruning generator lives on the CPU: both prune the same edges.
    assert torch.allclose(loss_dev.cpu(), loss_cpu, atol=1e-6)
    cpu.eval()
    dev.eval()
    for a, b in zip(cpu.embed(), dev.embed(), strict=True):
        assert torch.allclose(b.cpu(), a, atol=1e-6)
