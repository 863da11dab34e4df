import torch
from torch_geometric.testing import withDevice

from mllmrec_pyg.transforms import RefineItemGraph, ThresholdKNN
from mllmrec_pyg.transforms._ivf import ivf_topk
from mllmrec_pyg.transforms._topk import cosine_topk

from .test_jaccard_cooccurrence import graph


def _features(n: int = 300, d: int = 16) -> torch.Tensor:
    # Gaussian features: no two similarities of a row within float rounding.
    return torch.randn(n, d, generator=torch.Generator().manual_seed(3))


@withDevice
def test_cosine_and_ivf_topk_on_device_equal_cpu(device):
    x = _features()
    for search in (lambda z: cosine_topk(z, 5, False),
                   lambda z: ivf_topk(z, 5, False, nlist=8, nprobe=8)):
        row, col, sim = search(x)
        d_row, d_col, d_sim = search(x.to(device))
        assert d_row.device.type == device.type
        assert torch.equal(d_row.cpu(), row) and torch.equal(d_col.cpu(), col)
        assert torch.allclose(d_sim.cpu(), sim, atol=1e-5)


@withDevice
def test_refined_graph_on_device_equals_cpu(device):
    x = _features(6, 4)
    cpu, dev = graph(), graph()
    cpu['item'].x = x
    dev['item'].x = x.to(device)
    store = dev['user', 'interacts', 'item']
    for name, value in list(store.items()):
        store[name] = value.to(device)
    cpu = RefineItemGraph(knn_k=2, alpha=0.0, jaccard_k=2)(cpu)
    dev = RefineItemGraph(knn_k=2, alpha=0.0, jaccard_k=2)(dev)
    for rel in ('knn', 'cooccurs', 'similar'):
        a, b = cpu['item', rel, 'item'], dev['item', rel, 'item']
        assert b.edge_index.device.type == device.type
        assert torch.equal(b.edge_index.cpu(), a.edge_index), rel
        assert torch.allclose(b.edge_weight.cpu().float(), a.edge_weight.float(),
                              atol=1e-6), rel
    knn = ThresholdKNN(k=3, alpha=0.2)
    assert torch.equal(knn(dev)['item', 'knn', 'item'].edge_index.cpu(),
                       knn(cpu)['item', 'knn', 'item'].edge_index)
