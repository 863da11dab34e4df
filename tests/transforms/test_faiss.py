import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.transforms import ThresholdKNN
from mllmrec_pyg.transforms.knn_recall import knn_recall

pytest.importorskip('faiss')


def clustered(num_items: int = 400, dim: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(8, dim, generator=gen)
    assign = torch.randint(0, 8, (num_items,), generator=gen)
    x = centers[assign] + 0.5 * torch.randn(num_items, dim, generator=gen)
    x[5] = 0  # a zero vector is isolated by every backend
    return x


def knn(x: torch.Tensor, **kwargs) -> torch.Tensor:
    data = HeteroData()
    data['item'].x = x
    return ThresholdKNN(**kwargs)(data)['item', 'knn', 'item'].edge_index


@pytest.mark.parametrize('include_self', [False, True])
def test_faiss_exact_equals_torch(include_self):
    x = clustered()
    expected = knn(x, k=5, alpha=0.2, include_self=include_self)
    assert torch.equal(knn(x, k=5, alpha=0.2, include_self=include_self,
                           backend='faiss'), expected)
    # Probing every inverted list makes the IVF index exhaustive: exact too.
    assert torch.equal(knn(x, k=5, alpha=0.2, include_self=include_self,
                           backend='faiss-ivf', nlist=4, nprobe=4), expected)
    assert 5 not in expected.view(-1).tolist()


def test_faiss_ivf_recall_and_knn_recall():
    x = clustered()
    edge_index = knn(x, k=10, alpha=None, backend='faiss-ivf', nlist=8,
                     nprobe=2)
    sample = torch.arange(0, 400, 7)
    sample = sample[sample != 5]
    recall = knn_recall(x, edge_index[1], edge_index[0], 10, sample)
    assert 0.8 <= recall <= 1.0
    exact = knn(x, k=10, alpha=None)
    assert knn_recall(x, exact[1], exact[0], 10, sample) == 1.0
    # Half of every list replaced by non-neighbours: recall 1/2 exactly.
    z = torch.nn.functional.normalize(x, dim=1)
    far = (z @ z.t()).argsort(dim=1)[:, :5]  # the 5 least similar items
    row = exact[0].view(-1, 10)[:, :5].reshape(-1)
    approx_row = torch.cat([row, row])
    approx_col = torch.cat([exact[1].view(-1, 10)[:, :5].reshape(-1),
                            far[row.view(-1, 5)[:, 0]].reshape(-1)])
    assert knn_recall(x, approx_col, approx_row, 10, sample) == 0.5


def test_faiss_repr():
    assert str(ThresholdKNN(backend='faiss-ivf')) == \
        "ThresholdKNN(k=10, alpha=0.4, backend='faiss-ivf')"
