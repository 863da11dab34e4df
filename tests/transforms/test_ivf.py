import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.transforms import RefineItemGraph, ThresholdKNN, knn_recall
from mllmrec_pyg.transforms._ivf import (
    default_ivf_nlist,
    default_ivf_nprobe,
    ivf_topk,
    spherical_kmeans,
)
from mllmrec_pyg.transforms._topk import cosine_topk

# Same items as test_threshold_knn: item 4 is a zero vector.
X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])


def clustered(num_clusters: int, per_cluster: int, dim: int = 16,
              noise: float = 0.3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_clusters, dim, generator=gen) * 3
    x = centers.repeat_interleave(per_cluster, dim=0)
    return x + noise * torch.randn(x.size(0), dim, generator=gen)


@pytest.mark.parametrize('include_self', [False, True])
def test_ivf_probing_every_cluster_is_the_exact_search(include_self):
    # Tiny catalogue: with every cluster probed the candidate set is the
    # whole catalogue, so edges, ties (lower index first) and the isolated
    # zero vector are exactly those of the exact search.
    for k in (1, 2, 3):
        expected = cosine_topk(X, k, include_self)
        got = ivf_topk(X, k, include_self, nlist=2, nprobe=2)
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b)
    x = clustered(6, 20)
    expected = cosine_topk(x, 5, include_self)
    got = ivf_topk(x, 5, include_self, nlist=6, nprobe=6)
    assert torch.equal(got[0], expected[0])
    assert torch.equal(got[1], expected[1])
    assert torch.allclose(got[2], expected[2])


def test_threshold_knn_ivf_tiny_graph_exact_edges():
    data = HeteroData()
    data['item'].x = X
    out = ThresholdKNN(k=2, alpha=None, backend='ivf')(data)
    assert out['item', 'knn', 'item'].edge_index.tolist() == [
        [0, 0, 1, 1, 2, 2, 3, 3], [1, 2, 0, 2, 1, 0, 2, 1]]
    data = HeteroData()
    data['item'].x = X
    out = ThresholdKNN(k=2, alpha=0.5, backend='ivf')(data)
    assert out['item', 'knn', 'item'].edge_index.tolist() == [[0, 1, 1, 2],
                                                              [1, 0, 2, 1]]


def test_ivf_finds_neighbours_in_other_clusters_when_probed():
    # Two items of cluster A sit right next to cluster B: probing only
    # their own cluster misses B, probing two clusters finds it.
    x = torch.tensor([[1.0, 0.00], [1.0, 0.05], [1.0, -0.05],
                      [0.0, 1.00], [0.05, 1.0], [-0.05, 1.0]])
    row, col, _ = ivf_topk(x, 5, False, nlist=2, nprobe=1)
    assert row.numel() == 6 * 2  # each item only sees its own cluster
    assert set(col[row == 0].tolist()) == {1, 2}
    row, col, _ = ivf_topk(x, 5, False, nlist=2, nprobe=2)
    assert row.numel() == 6 * 5


def test_ivf_recall_on_separated_clusters_with_few_probes():
    x = clustered(40, 25, noise=0.2)
    row, col, _ = ivf_topk(x, 10, False)  # defaults: 126 clusters, 32 probed
    assert row.numel() == x.size(0) * 10
    sample = torch.arange(0, x.size(0), 7)
    assert knn_recall(x, col, row, 10, sample) == pytest.approx(1.0)


def test_knn_recall_counts_missing_neighbours():
    x = clustered(4, 10)
    row, col, sim = cosine_topk(x, 3, False)
    sample = torch.arange(x.size(0))
    assert knn_recall(x, col, row, 3, sample) == 1.0
    # Drop the best neighbour of every item: 2 of 3 found.
    first = torch.ones_like(row, dtype=torch.bool)
    first[torch.arange(0, row.numel(), 3)] = False
    assert knn_recall(x, col[first], row[first], 3, sample) == \
        pytest.approx(2 / 3)
    # With a threshold above every similarity nothing is expected.
    assert knn_recall(x, col[:0], row[:0], 3, sample, alpha=1.0) == 1.0
    assert knn_recall(x, col[:0], row[:0], 3, sample) == 0.0


def test_spherical_kmeans_recovers_separated_clusters():
    x = clustered(3, 30, noise=0.05)
    z = x / x.norm(dim=1, keepdim=True)
    centroids = spherical_kmeans(z, 3, iterations=10)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(3))
    assign = (z @ centroids.t()).argmax(dim=1).view(3, 30)
    # Every true cluster lands in one k-means cluster, all three distinct.
    assert all(len(set(a.tolist())) == 1 for a in assign)
    assert len(set(assign[:, 0].tolist())) == 3


def test_ivf_defaults_and_degenerate_inputs():
    assert default_ivf_nlist(1_000_000) == 4000
    assert default_ivf_nprobe(4000) == 62
    assert default_ivf_nprobe(100) == 32
    assert default_ivf_nprobe(10) == 10
    for x in (torch.zeros(3, 4), torch.ones(1, 4)):
        row, col, sim = ivf_topk(x, 2, False)
        assert row.numel() == col.numel() == sim.numel() == 0
    row, col, sim = ivf_topk(torch.ones(1, 4), 2, True)
    assert row.tolist() == [0] and col.tolist() == [0]
    assert sim.tolist() == [1.0]


def test_refine_item_graph_ivf_repr_and_equality_with_exact():
    x = clustered(5, 12)
    data = HeteroData()
    data['user'].num_nodes = 3
    data['item'].x = x
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 30]])
    store.train_mask = torch.ones(5, dtype=torch.bool)
    transform = RefineItemGraph(knn_k=4, alpha=0.2, jaccard_k=2,
                                backend='ivf', nlist=5, nprobe=5)
    assert repr(transform) == ("RefineItemGraph(knn_k=4, alpha=0.2, "
                               "jaccard_k=2, backend='ivf')")
    assert repr(ThresholdKNN(backend='ivf')) == \
        "ThresholdKNN(k=10, alpha=0.4, backend='ivf')"
    got = transform(data.clone())['item', 'similar', 'item']
    expected = RefineItemGraph(knn_k=4, alpha=0.2, jaccard_k=2)(
        data.clone())['item', 'similar', 'item']
    assert torch.equal(got.edge_index, expected.edge_index)
    assert torch.allclose(got.edge_weight, expected.edge_weight)


@pytest.mark.parametrize('include_self', [False, True])
def test_ivf_scores_large_clusters_in_sub_blocks(monkeypatch, include_self):
    # One cluster holding everything (nlist=1), scored a few rows at a
    # time: still exactly the exact search.
    import mllmrec_pyg.transforms._ivf as ivf

    x = clustered(3, 20)
    expected = cosine_topk(x, 4, include_self)
    monkeypatch.setattr(ivf, '_ASSIGN_ELEMENTS', 150)  # 2 rows of 60
    for nlist in (1, 3):
        got = ivf_topk(x, 4, include_self, nlist=nlist, nprobe=nlist)
        assert torch.equal(got[0], expected[0])
        assert torch.equal(got[1], expected[1])
        assert torch.allclose(got[2], expected[2])
