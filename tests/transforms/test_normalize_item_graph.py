import math

import pytest
import torch
from torch_geometric.data import Data, HeteroData
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce

from mllmrec_pyg.transforms import NormalizeItemGraph


def graph() -> HeteroData:
    # S~: 0->1, 1->0, 2->0 (binary);  C~: 0->1 (0.5), 2->1 (0.25), so
    # S* = [[0, 1.5, 0], [1, 0, 0], [1, 0.25, 0]] (rows: receiving item).
    data = HeteroData()
    data['item'].num_nodes = 4  # item 3 has no edge at all
    data['item', 'knn', 'item'].edge_index = torch.tensor([[0, 1, 2],
                                                           [1, 0, 0]])
    data['item', 'knn', 'item'].edge_weight = torch.ones(3)
    data['item', 'cooccurs', 'item'].edge_index = torch.tensor([[0, 2],
                                                                [1, 1]])
    data['item', 'cooccurs', 'item'].edge_weight = torch.tensor([0.5, 0.25])
    return data


def similar(data: HeteroData):
    store = data['item', 'similar', 'item']
    return store.edge_index.tolist(), store.edge_weight


def test_normalize_row_degrees_reference_convention():
    edge_index, weight = similar(NormalizeItemGraph()(graph()))
    assert edge_index == [[0, 1, 2, 2], [1, 0, 0, 1]]
    d = [1.5, 1.0, 1.25]  # row sums of S*
    expected = [1.5 / math.sqrt(d[0] * d[1]), 1.0 / math.sqrt(d[1] * d[0]),
                1.0 / math.sqrt(d[2] * d[0]), 0.25 / math.sqrt(d[2] * d[1])]
    torch.testing.assert_close(weight, torch.tensor(expected))


def test_normalize_column_degrees():
    edge_index, weight = similar(NormalizeItemGraph(degree='col')(graph()))
    assert edge_index == [[0, 1, 2, 2], [1, 0, 0, 1]]
    d = [2.0, 1.75, 0.0]  # column sums; item 2 sends to nobody
    expected = [1.5 / math.sqrt(d[0] * d[1]), 1.0 / math.sqrt(d[1] * d[0]),
                0.0, 0.0]
    torch.testing.assert_close(weight, torch.tensor(expected))


def test_normalize_symmetrize():
    edge_index, weight = similar(NormalizeItemGraph(symmetrize=True)(graph()))
    assert edge_index == [[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]]
    d = [3.5, 2.75, 1.25]  # S* + S*^T: w01 = 2.5, w02 = 1, w12 = 0.25
    w01 = 2.5 / math.sqrt(d[0] * d[1])
    w02 = 1.0 / math.sqrt(d[0] * d[2])
    w12 = 0.25 / math.sqrt(d[1] * d[2])
    torch.testing.assert_close(weight,
                               torch.tensor([w01, w02, w01, w12, w02, w12]))


def test_normalize_is_gcn_norm_without_self_loops():
    # Eq. 11 is PyG's gcn_norm of the coalesced S* (no self-loops): the row
    # convention is flow="target_to_source", the column one the default.
    data = graph()
    index = torch.cat([data['item', 'knn', 'item'].edge_index,
                       data['item', 'cooccurs', 'item'].edge_index], dim=1)
    weight = torch.cat([data['item', 'knn', 'item'].edge_weight,
                        data['item', 'cooccurs', 'item'].edge_weight])
    index, weight = coalesce(index, weight, 4, reduce='sum')
    for degree, flow in (('row', 'target_to_source'),
                         ('col', 'source_to_target')):
        expected = gcn_norm(index, weight, 4, add_self_loops=False,
                            flow=flow)[1]
        _, got = similar(NormalizeItemGraph(degree=degree)(graph()))
        assert torch.equal(got, expected)


def test_normalize_sparse_adjacency_and_propagation_direction():
    out = NormalizeItemGraph(sparse_adjacency=True)(graph())
    store = out['item', 'similar', 'item']
    dense = torch.zeros(4, 4)
    dense[store.edge_index[0], store.edge_index[1]] = store.edge_weight
    assert store.adj_t.layout == torch.sparse_csr
    torch.testing.assert_close(store.adj_t.to_dense(), dense)
    # e'_i = sum_j S^_ij e_j: messages flow from edge_index[1] to [0].
    x = torch.arange(8.0).view(4, 2)
    from torch_geometric.nn import LGConv
    conv = LGConv(normalize=False)
    torch.testing.assert_close(store.adj_t @ x, dense @ x)
    torch.testing.assert_close(
        conv(x, store.edge_index.flip(0), store.edge_weight), dense @ x)


def test_normalize_works_on_data():
    data = Data(edge_index=torch.tensor([[0, 0, 1], [1, 1, 2]]), num_nodes=3)
    out = NormalizeItemGraph()(data)
    # Duplicates are summed: S* = [[0, 2, 0], [0, 0, 1], [0, 0, 0]].
    assert out.edge_index.tolist() == [[0, 1], [1, 2]]
    torch.testing.assert_close(out.edge_weight,
                               torch.tensor([2 / math.sqrt(2.0), 0.0]))


def test_normalize_single_relation_and_empty():
    out = NormalizeItemGraph(relations=['knn'])(graph())
    edge_index, weight = similar(out)
    assert edge_index == [[0, 1, 2], [1, 0, 0]]
    torch.testing.assert_close(weight, torch.ones(3))
    data = graph()
    data['item', 'cooccurs', 'item'].edge_index = torch.empty(2, 0,
                                                              dtype=torch.long)
    data['item', 'cooccurs', 'item'].edge_weight = torch.empty(0)
    data['item', 'knn', 'item'].edge_index = torch.empty(2, 0,
                                                         dtype=torch.long)
    data['item', 'knn', 'item'].edge_weight = torch.empty(0)
    edge_index, weight = similar(NormalizeItemGraph()(data))
    assert edge_index == [[], []] and weight.numel() == 0


def test_normalize_repr():
    assert str(NormalizeItemGraph()) == "NormalizeItemGraph(degree='row')"
    assert str(NormalizeItemGraph(degree='col', symmetrize=True,
                                  sparse_adjacency=True)) == \
        "NormalizeItemGraph(degree='col', symmetrize=True, " \
        "sparse_adjacency=True)"


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="'degree'"):
        NormalizeItemGraph(degree='sym')
    with pytest.raises(ValueError, match="'relations'"):
        NormalizeItemGraph(relations=[])
    with pytest.raises(ValueError, match="'relations'"):
        NormalizeItemGraph(relations='knn')
    data = graph()
    del data['item', 'cooccurs', 'item']
    with pytest.raises(ValueError, match='run ThresholdKNN'):
        NormalizeItemGraph()(data)
    data = graph()
    data['item', 'cooccurs', 'item'].edge_weight = torch.tensor([-0.5, 0.25])
    with pytest.raises(ValueError, match='negative'):
        NormalizeItemGraph()(data)
    with pytest.raises(ValueError, match='edge_index is missing'):
        NormalizeItemGraph()(Data(num_nodes=2))
