import math
import zlib

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import Compose

from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.transforms import (
    JaccardCoOccurrence,
    NormalizeItemGraph,
    RefineItemGraph,
    ThresholdKNN,
)
from tests.conftest import shared_dataset
from tests.transforms.oracles import dense_cosine


def graph() -> HeteroData:
    # Cosines: s01 = s12 = 1/sqrt(2), s02 = s23 = 0, s03 = -1.
    # Training audiences: i0 {0}, i1 {1}, i2 {1}, i3 {0, 2}: J03 = 1/2,
    # J12 = 1.  The validation edge (2, 1) must not count.
    data = HeteroData()
    data['user'].num_nodes = 3
    data['item'].x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0],
                                   [-1.0, 0.0]])
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor([[0, 1, 1, 0, 2, 2], [0, 1, 2, 3, 3, 1]])
    store.train_mask = torch.tensor([True] * 5 + [False])
    return data


def test_refine_item_graph_hand_computed():
    out = RefineItemGraph(knn_k=1, alpha=0.5, jaccard_k=1)(graph())
    # k-NN (alpha 0.5): 0->1, 1->0 (tie with 2, lower index), 2->1; item 3's
    # best cosine is 0 < alpha.  Jaccard top-1: 0->3 (1/2), 1->2 (1),
    # 2->1 (1), 3->0 (1/2).  S* rows: 0 {1: 1, 3: .5}, 1 {0: 1, 2: 1},
    # 2 {1: 2}, 3 {0: .5}; row degrees 1.5, 2, 2, 0.5.
    assert out['item', 'knn', 'item'].edge_index.tolist() == \
        [[0, 1, 2], [1, 0, 1]]
    assert out['item', 'cooccurs', 'item'].edge_index.tolist() == \
        [[0, 1, 2, 3], [3, 2, 1, 0]]
    store = out['item', 'similar', 'item']
    assert store.edge_index.tolist() == [[0, 0, 1, 1, 2, 3],
                                         [1, 3, 0, 2, 1, 0]]
    expected = [1 / math.sqrt(1.5 * 2), 0.5 / math.sqrt(1.5 * 0.5),
                1 / math.sqrt(2 * 1.5), 1 / math.sqrt(2 * 2),
                2 / math.sqrt(2 * 2), 0.5 / math.sqrt(0.5 * 1.5)]
    torch.testing.assert_close(store.edge_weight, torch.tensor(expected))


def test_refine_item_graph_is_the_composition():
    ours = RefineItemGraph(knn_k=2, alpha=None, jaccard_k=0,
                           include_self=True, symmetrize=True)(graph())
    theirs = Compose([ThresholdKNN(2, None, include_self=True),
                      JaccardCoOccurrence(0),
                      NormalizeItemGraph(symmetrize=True)])(graph())
    for relation in ('knn', 'cooccurs', 'similar'):
        a, b = ours['item', relation, 'item'], theirs['item', relation, 'item']
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_weight, b.edge_weight)


def test_refine_item_graph_repr():
    assert str(RefineItemGraph()) == \
        'RefineItemGraph(knn_k=10, alpha=0.4, jaccard_k=10)'
    assert str(RefineItemGraph(knn_k=5, alpha=0.7, jaccard_k=15,
                               include_self=True, degree='col')) == \
        "RefineItemGraph(knn_k=5, alpha=0.7, jaccard_k=15, " \
        "include_self=True, degree='col')"


def dense_refined(x, train, num_items, k_s, alpha, k_c):
    r"""Eq. 6-11 written out on dense matrices, ties to the lower index."""
    sim, _, order = dense_cosine(x)
    S = torch.zeros(num_items, num_items, dtype=torch.float64)
    top = order[:, :k_s]
    chosen = sim.gather(1, top)
    mask = chosen >= alpha
    S[torch.arange(num_items).unsqueeze(1).expand_as(top)[mask], top[mask]] = 1

    # |U_i & U_j| counted user by user (R R^T without a users-wide matrix).
    inter = torch.zeros(num_items, num_items, dtype=torch.float64)
    pairs = torch.unique(train, dim=1)
    _, counts = torch.unique_consecutive(pairs[0], return_counts=True)
    for items in torch.split(pairs[1], counts.tolist()):
        inter[items.unsqueeze(1), items.unsqueeze(0)] += 1
    size = inter.diagonal().clone().unsqueeze(1)
    union = size + size.t() - inter
    J = torch.where(union > 0, inter / union.clamp_min(1), 0.0)
    J.fill_diagonal_(0)
    top = torch.sort(J, dim=1, descending=True, stable=True).indices[:, :k_c]
    chosen = J.gather(1, top)
    C = torch.zeros_like(J)
    C.scatter_(1, top, chosen)

    S_star = S + C
    d = S_star.sum(1)
    d_inv_sqrt = torch.where(d > 0, d.clamp_min(1e-300).pow(-0.5), 0.0)
    return d_inv_sqrt.unsqueeze(1) * S_star * d_inv_sqrt.unsqueeze(0)


def hashed_text_features(texts, buckets=1024, dim=384):
    # TF-IDF of hashed word counts, randomly projected to `dim`: a cheap
    # real text feature with continuous similarities (no MiniLM needed).
    counts = np.zeros((len(texts), buckets))
    for i, text in enumerate(texts):
        for word in text.split():
            counts[i, zlib.crc32(word.encode()) % buckets] += 1
    idf = np.log((1 + len(texts)) / (1 + (counts > 0).sum(0))) + 1
    projection = np.random.default_rng(0).standard_normal((buckets, dim))
    return torch.from_numpy((counts * idf) @ projection)


@pytest.mark.dataset
def test_refine_item_graph_equals_dense_on_sports_subset():
    from mllmrec_pyg.data import load_dataset

    sports = load_dataset(str(shared_dataset('amazon-sports')))
    num_items = 2000
    data = HeteroData()
    data['user'].num_nodes = sports['user'].num_nodes
    texts = sports['item'].text['idgenrec_text'][:num_items]
    data['item'].x = hashed_text_features(texts)
    interacts = sports['user', 'interacts', 'item']
    keep = interacts.edge_index[1] < num_items
    store = data['user', 'interacts', 'item']
    store.edge_index = interacts.edge_index[:, keep]
    for mask in ('train_mask', 'val_mask', 'test_mask'):
        store[mask] = interacts[mask][keep]
    assert store.train_mask.sum() > 5000

    dense = dense_refined(data['item'].x, train_edge_index(data), num_items,
                          10, 0.4, 10)
    for chunk_size in (None, 300):
        out = RefineItemGraph(knn_k=10, alpha=0.4, jaccard_k=10,
                              chunk_size=chunk_size)(data)
        similar = out['item', 'similar', 'item']
        ours = torch.zeros(num_items, num_items, dtype=torch.float64)
        ours[similar.edge_index[0], similar.edge_index[1]] = \
            similar.edge_weight.double()
        assert (ours != 0).sum() == (dense != 0).sum()
        torch.testing.assert_close(ours, dense, atol=1e-6, rtol=0)
