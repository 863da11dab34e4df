import pytest
import torch
from torch_geometric.data import Data, HeteroData

from mllmrec_pyg.transforms import JaccardCoOccurrence
from mllmrec_pyg.transforms._jaccard import jaccard_topk

# Training audiences:  i0 {0, 1}   i1 {0, 1} (twin of i0)   i2 {1, 2}
#                      i3 {3} (single user)   i4 {} (no user)   i5 {3, 4}
# so J01 = 1, J02 = J12 = 1/3, J35 = 1/2 and every other pair is 0.
TRAIN = [(0, 0), (1, 0), (0, 1), (1, 1), (1, 2), (2, 2), (3, 3), (3, 5),
         (4, 5), (0, 0)]  # (0, 0) twice: audiences are sets
# Validation/test edges that would change every score if they leaked.
HELD_OUT = [(4, 4), (2, 0), (3, 4), (0, 3)]


def graph(train=TRAIN, held_out=HELD_OUT, num_items=6) -> HeteroData:
    data = HeteroData()
    data['user'].num_nodes = 5
    data['item'].num_nodes = num_items
    pairs = train + held_out
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    store.train_mask = torch.tensor([True] * len(train) +
                                    [False] * len(held_out))
    store.val_mask = ~store.train_mask
    store.test_mask = torch.zeros(len(pairs), dtype=torch.bool)
    return data


def cooccurs(data: HeteroData):
    store = data['item', 'cooccurs', 'item']
    return store.edge_index.tolist(), store.edge_weight.tolist()


def test_jaccard_top1_twins_and_single_user_items():
    edge_index, weight = cooccurs(JaccardCoOccurrence(k=1)(graph()))
    # Twins i0/i1 keep each other at weight 1 (the reference's J == 1 -> 0
    # would drop them); i2 ties i0 and i1 at 1/3 and takes the lower index;
    # single-user i3 gets no self-loop, only i5; i4 has no user, no edge.
    assert edge_index == [[0, 1, 2, 3, 5], [1, 0, 0, 5, 3]]
    third = torch.tensor(1 / 3).item()
    assert weight == [1.0, 1.0, third, 0.5, 0.5]


def test_jaccard_top2():
    edge_index, weight = cooccurs(JaccardCoOccurrence(k=2)(graph()))
    assert edge_index == [[0, 0, 1, 1, 2, 2, 3, 5], [1, 2, 0, 2, 0, 1, 5, 3]]
    third = torch.tensor(1 / 3).item()
    assert weight == [1.0, third, 1.0, third, third, third, 0.5, 0.5]
    assert JaccardCoOccurrence(k=2)(graph())['item', 'cooccurs', 'item'] \
        .edge_weight.dtype == torch.get_default_dtype()


def test_jaccard_matches_reference_except_its_diagonal_trick():
    # The reference: J = inter / (union + 1e-7); J[J == 1] = 0; top-k.
    R = torch.zeros(6, 5)
    for user, item in TRAIN:
        R[item, user] = 1
    inter = R @ R.t()
    size = R.sum(1, keepdim=True)
    ref = inter / (size + size.t() - inter + 1e-7)
    ref[ref == 1.0] = 0
    assert ref[0, 1] == 0  # twins dropped by the reference...
    assert 0.9999 < ref[3, 3] < 1  # ...and a self-weight on a 1-user item
    ref.fill_diagonal_(0)
    ref[0, 1] = ref[1, 0] = 1
    ours = torch.zeros(6, 6)
    out = JaccardCoOccurrence(k=5)(graph())['item', 'cooccurs', 'item']
    ours[out.edge_index[0], out.edge_index[1]] = out.edge_weight
    assert torch.allclose(ours, ref, atol=1e-6)


def test_jaccard_k0_disables_and_reads_nothing():
    data = HeteroData()
    data['item'].num_nodes = 3
    edge_index, weight = cooccurs(JaccardCoOccurrence(k=0)(data))
    assert edge_index == [[], []] and weight == []


def test_jaccard_without_any_shared_user_is_empty():
    out = JaccardCoOccurrence(k=3)(graph(train=[(0, 0), (1, 1)]))
    assert cooccurs(out) == ([[], []], [])


def test_jaccard_blocks_do_not_change_the_result():
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.stack([torch.randint(0, 30, (300,), generator=gen),
                              torch.randint(0, 40, (300,), generator=gen)])
    full = jaccard_topk(edge_index, 30, 40, 4)
    blocks = jaccard_topk(edge_index, 30, 40, 4, block_nonzeros=1)
    for a, b in zip(full, blocks, strict=True):
        assert torch.equal(a, b)
    # Dense oracle: sort each row by (J desc, index asc), keep J > 0.
    R = torch.zeros(40, 30, dtype=torch.float64)
    R[edge_index[1], edge_index[0]] = 1
    inter = R @ R.t()
    size = R.sum(1, keepdim=True)
    union = size + size.t() - inter
    J = torch.where(union > 0, inter / union.clamp_min(1), 0.0)
    J.fill_diagonal_(0)
    order = torch.sort(J, dim=1, descending=True, stable=True).indices[:, :4]
    expected = {(i, j) for i in range(40) for j in order[i].tolist()
                if J[i, j] > 0}
    row, col, val = full
    assert set(zip(row.tolist(), col.tolist(), strict=True)) == expected
    assert torch.equal(val, J[row, col])


def test_jaccard_repr():
    assert str(JaccardCoOccurrence()) == 'JaccardCoOccurrence(k=10)'
    assert str(JaccardCoOccurrence(k=0)) == 'JaccardCoOccurrence(k=0)'


@pytest.mark.parametrize('k', [-1, 1.5, True, None])
def test_jaccard_rejects_bad_k(k):
    with pytest.raises(ValueError, match="'k' must be a non-negative"):
        JaccardCoOccurrence(k=k)


def test_jaccard_rejects_bad_input():
    with pytest.raises(ValueError, match='no training interactions'):
        JaccardCoOccurrence()(graph(train=[]))
    data = graph()
    del data['user', 'interacts', 'item'].train_mask
    with pytest.raises(ValueError, match='train_mask'):
        JaccardCoOccurrence()(data)
    data = HeteroData()
    data['item'].num_nodes = 3
    with pytest.raises(ValueError, match='interacts'):
        JaccardCoOccurrence()(data)
    with pytest.raises(ValueError, match='out of range'):
        JaccardCoOccurrence()(graph(num_items=4))
    with pytest.raises(ValueError, match='HeteroData'):
        JaccardCoOccurrence()(Data(num_nodes=3))
