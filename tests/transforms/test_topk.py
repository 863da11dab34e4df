import pytest
import torch

from mllmrec_pyg.transforms._faiss import faiss_topk
from mllmrec_pyg.transforms._ivf import ivf_topk
from mllmrec_pyg.transforms._topk import cosine_topk, no_neighbours, unit_rows

# Norms 4, 0, 2, 0.
X = torch.tensor([[0.0, 4.0], [0.0, 0.0], [-2.0, 0.0], [-0.0, 0.0]])


def test_unit_rows_full_and_compact():
    z, index, k = unit_rows(X, 5, include_self=False)
    assert z.tolist() == [[0.0, 1.0], [0.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]
    assert index.tolist() == [0, 2]
    assert k == 1  # two non-zero rows: one candidate besides the row itself
    z, index, k = unit_rows(X, 5, include_self=True, compact=True)
    assert z.tolist() == [[0.0, 1.0], [-1.0, 0.0]]
    assert index.tolist() == [0, 2]
    assert k == 2
    assert unit_rows(X, 1, include_self=True).k == 1


def test_unit_rows_given_norms():
    norm = torch.tensor([8.0, 0.0, 4.0, 0.0])
    z, index, _ = unit_rows(X, 1, False, compact=True, norm=norm)
    assert z.tolist() == [[0.0, 0.5], [-0.5, 0.0]]
    assert index.tolist() == [0, 2]


def test_no_neighbours_dtype_and_every_backend_agrees():
    row, col, sim = no_neighbours(X.double())
    assert (row.dtype, col.dtype, sim.dtype) == (torch.long, torch.long,
                                                 torch.float64)
    assert row.numel() == col.numel() == sim.numel() == 0
    # A single non-zero row has no neighbour but itself.
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    searches = [cosine_topk, lambda *a: ivf_topk(*a, nlist=1)]
    try:
        import faiss  # noqa: F401
        searches.append(lambda *a: faiss_topk(*a, approximate=False))
    except ImportError:
        pass
    for search in searches:
        row, col, sim = search(x, 3, False)
        assert row.numel() == 0 and sim.dtype == torch.float32
        row, col, sim = search(x, 3, True)
        assert (row.tolist(), col.tolist()) == ([1], [1])
        assert sim.tolist() == pytest.approx([1.0])
