import math

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.transforms import RefineItemGraph, ThresholdKNN, similarity_quantiles


def graph() -> HeteroData:
    # Image cosines: s01 = s12 = 1/sqrt(2), s02 = s23 = 0, s03 = -1,
    # s13 = -1/sqrt(2). Audio cosines: a02 = a13 = 1, the rest 0.
    # Training audiences: i0 {0}, i1 {1}, i2 {1}, i3 {0, 2}: J03 = 1/2, J12 = 1
    # (the validation edge (2, 1) does not count).
    data = HeteroData()
    data['user'].num_nodes = 3
    data['item'].num_nodes = 4
    data['item'].image_feat = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    data['item'].audio_feat = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 1.0]])
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor([[0, 1, 1, 0, 2, 2], [0, 1, 2, 3, 3, 1]])
    store.train_mask = torch.tensor([True] * 5 + [False])
    return data


def _normalised(dense: torch.Tensor) -> dict:
    # D^-1/2 S* D^-1/2 with row sums as degrees, as a {(i, j): value} map.
    deg = dense.sum(dim=1)
    return {(i, j): float(dense[i, j] / math.sqrt(deg[i] * deg[j]))
            for i in range(4) for j in range(4) if dense[i, j] != 0}


def _as_map(store) -> dict:
    return {(int(i), int(j)): float(w)
            for (i, j), w in zip(store.edge_index.t(), store.edge_weight, strict=True)}


def test_mix_refines_each_modality_and_adds_jaccard_once():
    out = RefineItemGraph(knn_k=1, alpha=[0.5, 0.5], jaccard_k=1,
                          key=['image_feat', 'audio_feat'])(graph())
    # Image top-1 (alpha .5): 0->1, 1->0 (tie with 2: lower index), 2->1;
    # weight 0.1. Audio top-1: 0->2, 1->3, 2->0, 3->1; weight 0.9.
    assert out['item', 'knn_image_feat', 'item'].edge_index.tolist() == [[0, 1, 2], [1, 0, 1]]
    assert out['item', 'knn_image_feat', 'item'].edge_weight.tolist() == pytest.approx([0.1] * 3)
    assert out['item', 'knn_audio_feat', 'item'].edge_index.tolist() == [[0, 1, 2, 3],
                                                                         [2, 3, 0, 1]]
    dense = torch.tensor([[0.0, 0.1, 0.9, 0.5],   # + Jaccard 0->3 (1/2)
                          [0.1, 0.0, 1.0, 0.9],   # + Jaccard 1->2 (1)
                          [0.9, 1.1, 0.0, 0.0],   # + Jaccard 2->1 (1)
                          [0.5, 0.9, 0.0, 0.0]])  # + Jaccard 3->0 (1/2)
    got = _as_map(out['item', 'similar', 'item'])
    want = _normalised(dense)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6)


def test_per_modality_thresholds_apply_to_their_modality():
    # alpha 0.8 removes every image edge (best image cosine 1/sqrt(2)).
    out = RefineItemGraph(knn_k=1, alpha=[0.8, 0.5], jaccard_k=0,
                          key=['image_feat', 'audio_feat'])(graph())
    assert out['item', 'knn_image_feat', 'item'].edge_index.size(1) == 0
    assert out['item', 'knn_audio_feat', 'item'].edge_index.size(1) == 4


def test_concat_thresholds_the_fused_similarity_once():
    # Fused cosine with weights (.1, .9): f02 = .9, f13 = .9 - .1/sqrt(2),
    # f01 = f12 = .1/sqrt(2), f03 = -.1, f23 = 0.
    out = RefineItemGraph(knn_k=1, alpha=0.5, jaccard_k=0, key=['image_feat', 'audio_feat'],
                          fusion='concat')(graph())
    assert out['item', 'knn', 'item'].edge_index.tolist() == [[0, 1, 2, 3], [2, 3, 0, 1]]
    assert '_refine_fused_x' not in out['item']
    low = RefineItemGraph(knn_k=1, alpha=0.85, jaccard_k=0, key=['image_feat', 'audio_feat'],
                          fusion='concat')(graph())
    # .9 - .1/sqrt(2) = 0.829 < 0.85: only 0<->2 survive.
    assert low['item', 'knn', 'item'].edge_index.tolist() == [[0, 2], [2, 0]]


def test_one_key_is_the_papers_graph():
    data = graph()
    data['item'].x = data['item'].image_feat
    one = RefineItemGraph(knn_k=1, alpha=0.5, jaccard_k=1, key=['image_feat'])(graph())
    plain = RefineItemGraph(knn_k=1, alpha=0.5, jaccard_k=1)(data)
    for name in ('edge_index', 'edge_weight'):
        assert torch.equal(one['item', 'similar', 'item'][name],
                           plain['item', 'similar', 'item'][name])
    assert repr(RefineItemGraph()) == 'RefineItemGraph(knn_k=10, alpha=0.4, jaccard_k=10)'


def test_bad_multimodal_settings_are_named():
    keys = ['image_feat', 'audio_feat']
    with pytest.raises(ValueError, match="one per key"):
        RefineItemGraph(alpha=[0.1, 0.2, 0.3], key=keys)
    with pytest.raises(ValueError, match="one 'alpha' thresholds the fused"):
        RefineItemGraph(alpha=[0.1, 0.2], key=keys, fusion='concat')
    with pytest.raises(ValueError, match="'fusion' must be 'mix' or 'concat'"):
        RefineItemGraph(key=keys, fusion='mean')
    with pytest.raises(ValueError, match="one weight per key"):
        RefineItemGraph(key=keys, modality_weights=[1.0])
    assert 'fusion' in repr(RefineItemGraph(key=keys, alpha=[0.9, 0.5]))


def test_threshold_knn_relation_and_weight():
    out = ThresholdKNN(1, 0.5, key='image_feat', relation='knn_image', weight=0.25)(graph())
    store = out['item', 'knn_image', 'item']
    assert store.edge_index.tolist() == [[0, 1, 2], [1, 0, 1]]
    assert store.edge_weight.tolist() == [0.25] * 3
    with pytest.raises(ValueError, match="'weight' must be a positive number"):
        ThresholdKNN(weight=0.0)


def test_similarity_quantiles_place_alpha_by_share_of_edges():
    x = graph()['item'].image_feat
    # Top-1 similarities: 1/sqrt(2) for items 0, 1, 2 and 0 for item 3.
    s = 1 / math.sqrt(2)
    assert similarity_quantiles(x, 1, (0.0, 0.25, 1.0)) == pytest.approx([0.0, s, s])
    torch.manual_seed(0)
    y = torch.randn(200, 16)
    for q, alpha in zip((0.25, 0.5, 0.75), similarity_quantiles(y, 5), strict=True):
        kept = ThresholdKNN(5, alpha)(_plain(y))['item', 'knn', 'item'].edge_index.size(1)
        assert kept == pytest.approx((1 - q) * 1000, abs=2)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        similarity_quantiles(x, 1, (1.5, ))


def _plain(x: torch.Tensor) -> HeteroData:
    data = HeteroData()
    data['item'].x = x
    return data
