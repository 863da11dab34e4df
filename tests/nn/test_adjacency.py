import pytest
import torch
from torch_geometric import EdgeIndex

from mllmrec_pyg.nn.adjacency import (
    bipartite_adjacency,
    bipartite_edges,
    edge_index_adjacency,
    normalized_adjacency,
    sparse_adjacency,
)


def test_sparse_adjacency_is_transposed_csr():
    # Edge 0 -> 1 (weight 3) is row 1 of A^T: node 1 receives it.
    adj = sparse_adjacency(torch.tensor([[0], [1]]), torch.tensor([3.0]), 2)
    assert adj.layout == torch.sparse_csr
    assert adj.to_dense().tolist() == [[0.0, 0.0], [3.0, 0.0]]


def test_sparse_adjacency_validates():
    with pytest.raises(ValueError, match=r'shape \[2, E\]'):
        sparse_adjacency(torch.tensor([0, 1]), None, 2)
    with pytest.raises(ValueError, match='2 entries for 1 edges'):
        sparse_adjacency(torch.tensor([[0], [1]]), torch.ones(2), 2)
    with pytest.raises(ValueError, match='refers to node 2'):
        sparse_adjacency(torch.tensor([[0], [2]]), None, 2)


def test_normalized_adjacency():
    # Node 0 receives from 1 and 2 (in-degree 2), nodes 1 and 2 from 0.
    index = torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2]])
    dense = normalized_adjacency(index, None, 3).to_dense()
    s = 2 ** -0.5
    assert torch.allclose(dense, torch.tensor([[0, s, s], [s, 0, 0],
                                               [s, 0, 0]]))


def test_bipartite_edges_exact():
    # u0 - i0, u0 - i1 (twice: counted once), u1 - i1.
    interactions = torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1]])
    index, weight = bipartite_edges(interactions, num_users=2, num_items=2)
    dense = torch.zeros(4, 4)
    dense[index[0], index[1]] = weight
    # Degrees: u0 2, u1 1, i0 1, i1 2.
    h = 0.5
    s = 2 ** -0.5
    expected = torch.tensor([[0, 0, s, h],
                             [0, 0, 0, s],
                             [s, 0, 0, 0],
                             [h, s, 0, 0]])
    assert torch.allclose(dense, expected)
    binary = bipartite_adjacency(interactions, 2, 2, normalize=False)
    assert binary.to_dense().tolist() == [[0, 0, 1, 1], [0, 0, 0, 1],
                                          [1, 0, 0, 0], [1, 1, 0, 0]]


def test_bipartite_edges_validates():
    with pytest.raises(ValueError, match='user 2 but there are 2 users'):
        bipartite_edges(torch.tensor([[2], [0]]), 2, 2)
    with pytest.raises(ValueError, match='item 5 but there are 2 items'):
        bipartite_edges(torch.tensor([[0], [5]]), 2, 2)


def test_edge_index_adjacency_sorted_with_weights():
    index = torch.tensor([[0, 2, 1], [2, 0, 0]])
    weight = torch.tensor([1.0, 2.0, 3.0])
    adj, sorted_weight = edge_index_adjacency(index, weight, 3)
    assert isinstance(adj, EdgeIndex)
    assert adj.is_sorted_by_col
    assert adj.sparse_size() == (3, 3)
    pairs = {(int(s), int(d)): float(w)
             for s, d, w in zip(adj[0], adj[1], sorted_weight, strict=True)}
    assert pairs == {(0, 2): 1.0, (2, 0): 2.0, (1, 0): 3.0}
