import pytest
import torch
from torch_geometric.data import Data

from mllmrec_pyg.nn import adjacency
from mllmrec_pyg.transforms import NormalizeItemGraph
from mllmrec_pyg.utils import check_graph, sparse_adjacency


def test_sparse_adjacency_is_the_one_csr_builder():
    assert adjacency.sparse_adjacency is sparse_adjacency


def test_sparse_adjacency_exact_and_sums_duplicates():
    # Edges 0 -> 1 (2.0 and 0.5: summed), 2 -> 1 (1.0), 1 -> 0 (3.0).
    index = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 1]])
    adj = sparse_adjacency(index, torch.tensor([2.0, 1.0, 3.0, 0.5]), 3)
    assert adj.layout == torch.sparse_csr
    assert adj.crow_indices().tolist() == [0, 1, 3, 3]
    assert adj.col_indices().tolist() == [1, 0, 2]
    assert adj.values().tolist() == [3.0, 2.5, 1.0]
    unit = sparse_adjacency(index[:, :3], None, 3)
    assert unit.to_dense().tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_sparse_adjacency_of_a_matrix_in_its_own_coordinates():
    # The item graphs store S_ij at (edge_index[0], edge_index[1]): flipping
    # gives the CSR of S itself, NormalizeItemGraph's adj_t.
    data = Data(edge_index=torch.tensor([[0, 0, 1], [1, 2, 2]]), num_nodes=3)
    data = NormalizeItemGraph(sparse_adjacency=True)(data)
    adj = sparse_adjacency(data.edge_index.flip(0), data.edge_weight, 3)
    assert torch.equal(adj.to_dense(), data.adj_t.to_dense())
    dense = torch.zeros(3, 3)
    dense[data.edge_index[0], data.edge_index[1]] = data.edge_weight
    assert torch.equal(adj.to_dense(), dense)


def test_check_graph():
    check_graph(torch.empty(2, 0, dtype=torch.long), None, 0)
    with pytest.raises(ValueError, match=r'shape \[2, E\]'):
        check_graph(torch.tensor([0, 1]), None, 2)
    with pytest.raises(ValueError, match='2 entries for 1 edges'):
        check_graph(torch.tensor([[0], [1]]), torch.ones(2), 2)
    with pytest.raises(ValueError, match='refers to node 2'):
        check_graph(torch.tensor([[0], [2]]), None, 2)
