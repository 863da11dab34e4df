import math

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from mllmrec_pyg.transforms import ThresholdKNN
from mllmrec_pyg.transforms._topk import cosine_topk, ranked_topk
from tests.transforms.oracles import dense_cosine

# Cosine similarities of these 2-d items (item 4 is a zero vector):
#   s01 = s12 = 1/sqrt(2), s02 = s23 = 0, s03 = -1, s13 = -1/sqrt(2).
X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])


def items(x: torch.Tensor = X) -> HeteroData:
    data = HeteroData()
    data['item'].x = x
    return data


def knn(data: HeteroData) -> torch.Tensor:
    return data['item', 'knn', 'item'].edge_index


def test_threshold_knn_top2_without_threshold():
    out = ThresholdKNN(k=2, alpha=None)(items())
    # Item 1 ties 0 and 2 (both 1/sqrt(2)); item 2 ties 0 and 3 (both 0):
    # the lower index wins.  The zero vector 4 neither selects nor is chosen.
    assert knn(out).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3],
                                 [1, 2, 0, 2, 1, 0, 2, 1]]
    assert out['item', 'knn', 'item'].edge_weight.tolist() == [1.0] * 8


def test_threshold_knn_alpha_keeps_only_similar_enough():
    out = ThresholdKNN(k=2, alpha=0.5)(items())
    assert knn(out).tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    out = ThresholdKNN(k=2, alpha=math.sqrt(0.5) + 1e-6)(items())
    assert knn(out).tolist() == [[], []]


def test_threshold_knn_include_self_reproduces_reference_slots():
    # The reference's top-k contains the item itself: K_s - 1 neighbours.
    out = ThresholdKNN(k=2, alpha=None, include_self=True)(items())
    assert knn(out).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3],
                                 [0, 1, 1, 0, 2, 1, 3, 2]]
    out = ThresholdKNN(k=1, alpha=0.9, include_self=True)(items())
    assert knn(out).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_threshold_knn_k_at_least_num_items():
    out = ThresholdKNN(k=10, alpha=None)(items())
    assert knn(out).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
                                 [1, 2, 3, 0, 2, 3, 1, 0, 3, 2, 1, 0]]
    # A threshold of -1 keeps everything, exactly like no threshold.
    assert knn(ThresholdKNN(k=10, alpha=-1.0)(items())).tolist() == \
        knn(out).tolist()
    out = ThresholdKNN(k=10, alpha=0.0, include_self=True)(items())
    assert knn(out).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3],
                                 [0, 1, 2, 1, 0, 2, 2, 1, 0, 3, 3, 2]]


def test_threshold_knn_all_zero_or_single_item():
    out = ThresholdKNN(k=3, alpha=None)(items(torch.zeros(3, 2)))
    assert knn(out).size() == (2, 0)
    out = ThresholdKNN(k=3, alpha=None)(items(torch.ones(1, 2)))
    assert knn(out).size() == (2, 0)
    out = ThresholdKNN(k=3, alpha=None, include_self=True)(
        items(torch.ones(1, 2)))
    assert knn(out).tolist() == [[0], [0]]


def test_threshold_knn_chunks_and_dtype_do_not_change_the_graph():
    full = ThresholdKNN(k=2, alpha=None)(items())
    chunked = ThresholdKNN(k=2, alpha=None, chunk_size=1)(items())
    assert knn(chunked).tolist() == knn(full).tolist()
    out = ThresholdKNN(k=2, alpha=None)(items(X.double()))
    assert knn(out).tolist() == knn(full).tolist()
    assert out['item', 'knn', 'item'].edge_weight.dtype == torch.float64


def test_threshold_knn_does_not_modify_input_and_works_on_data():
    data = items()
    ThresholdKNN(k=2)(data)
    assert ('item', 'knn', 'item') not in data.edge_types
    out = ThresholdKNN(k=2, alpha=0.5)(Data(x=X))
    assert out.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert out.edge_weight.tolist() == [1.0] * 4
    out = ThresholdKNN(k=1, alpha=None, key='feat', node_type='product')(
        HeteroData(product={'feat': X}))
    assert out['product', 'knn', 'product'].edge_index.tolist() == \
        [[0, 1, 2, 3], [1, 0, 1, 2]]


def test_threshold_knn_repr():
    assert str(ThresholdKNN()) == 'ThresholdKNN(k=10, alpha=0.4)'
    assert str(ThresholdKNN(k=5, alpha=None, include_self=True)) == \
        'ThresholdKNN(k=5, alpha=None, include_self=True)'
    assert str(ThresholdKNN(alpha=1)) == 'ThresholdKNN(k=10, alpha=1.0)'


@pytest.mark.parametrize('kwargs', [
    dict(k=0), dict(k=-3), dict(k=2.5), dict(k=True), dict(alpha=1.5),
    dict(alpha=-1.01), dict(alpha=float('nan')), dict(chunk_size=0),
    dict(backend='annoy'),
])
def test_threshold_knn_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ThresholdKNN(**kwargs)


def test_threshold_knn_rejects_bad_features():
    with pytest.raises(ValueError, match=r"data\['item'\].x is missing"):
        ThresholdKNN()(HeteroData(item={'num_nodes': 3}))
    with pytest.raises(ValueError, match='no node type'):
        ThresholdKNN()(HeteroData(user={'x': X}))
    with pytest.raises(ValueError, match='first: item 2'):
        ThresholdKNN()(items(torch.tensor([[1.0], [1.0], [math.nan]])))
    with pytest.raises(ValueError, match='NaN or infinite'):
        ThresholdKNN()(items(torch.tensor([[1.0], [math.inf]])))
    with pytest.raises(ValueError, match='floating-point'):
        ThresholdKNN()(items(torch.ones(3, 2, dtype=torch.long)))
    with pytest.raises(ValueError, match='data.x is missing'):
        ThresholdKNN()(Data(num_nodes=3))


def dense_oracle(x: torch.Tensor, k: int, include_self: bool):
    sim, valid, order = dense_cosine(
        x, math.inf if include_self else -math.inf)
    edges = set()
    for i in range(x.size(0)):
        for j in order[i, :k].tolist():
            if math.isfinite(sim[i, j]) or (include_self and i == j
                                             and bool(valid[i])):
                edges.add((i, j))
    return edges


@pytest.mark.parametrize('include_self', [False, True])
def test_cosine_topk_matches_sorting_oracle_with_many_ties(include_self):
    # Small integer features repeat a lot: many exact ties and duplicates,
    # which exercises the tie repair of ranked_topk.
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-1, 2, (60, 3), generator=gen).double()
    expected = dense_oracle(x, 4, include_self)
    reference = cosine_topk(x, 4, include_self)
    # Query chunks of 7 rows; candidate blocks of 5 and 6 columns (below
    # and above k + 1): ties across blocks still go to the lower index.
    for chunk_size, block_elements in ((None, 1 << 22), (7, 1 << 22),
                                       (7, 35), (7, 42), (1, 1)):
        row, col, sim = cosine_topk(x, 4, include_self, chunk_size,
                                    block_elements=block_elements)
        assert set(zip(row.tolist(), col.tolist(), strict=True)) == expected
        assert torch.equal(row, reference[0])
        assert torch.equal(col, reference[1])
        assert torch.allclose(sim, reference[2])


def test_ranked_topk_orders_ties_by_index():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1],
                           [-math.inf, 0.3, -math.inf, -math.inf, 0.3]])
    values, index = ranked_topk(scores, 3)
    assert index[0].tolist() == [1, 0, 2]
    assert values[0].tolist() == scores[0, [1, 0, 2]].tolist()
    # Fewer finite entries than k: the tail is -inf, dropped by callers.
    assert index[1, :2].tolist() == [1, 4]
    assert values[1, 2].item() == -math.inf


def test_threshold_knn_without_items():
    out = ThresholdKNN(k=3)(items(torch.empty(0, 4)))
    assert knn(out).size() == (2, 0)
    assert out['item', 'knn', 'item'].edge_weight.size() == (0,)
