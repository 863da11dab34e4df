import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.testing import withDevice

from mllmrec_pyg.nn.adjacency import sparse_adjacency
from mllmrec_pyg.nn.conv import LightGCNConv

# A 3-node path 0 - 1 - 2 with different weights per direction:
# 0 -> 1 (0.5), 1 -> 0 (0.5), 1 -> 2 (2), 2 -> 1 (2).
EDGE_INDEX = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
EDGE_WEIGHT = torch.tensor([0.5, 0.5, 2.0, 2.0])
X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
# Node 0 receives 0.5 * x1; node 1 receives 0.5 * x0 + 2 * x2; node 2
# receives 2 * x1.
EXPECTED = torch.tensor([[0.0, 0.5], [2.5, 2.0], [0.0, 2.0]])


def _inputs(device):
    edge_index, edge_weight = EDGE_INDEX.to(device), EDGE_WEIGHT.to(device)
    csr = sparse_adjacency(edge_index, edge_weight, 3)
    sorted_index, perm = EdgeIndex(edge_index, sparse_size=(3, 3)).sort_by(
        'col')
    return {
        'edge_index': (edge_index, edge_weight),
        'csr': (csr, None),
        'EdgeIndex': (sorted_index, edge_weight[perm]),
    }


def test_lightgcn_conv_repr():
    assert str(LightGCNConv()) == 'LightGCNConv(normalize=False)'
    assert str(LightGCNConv(normalize=True)) == 'LightGCNConv(normalize=True)'


@withDevice
def test_lightgcn_conv_exact_on_every_input(device):
    conv = LightGCNConv()
    fused_calls = []
    conv.register_message_and_aggregate_forward_hook(
        lambda module, inputs, output: fused_calls.append(1))
    x = X.to(device)
    for name, (adj, weight) in _inputs(device).items():
        fused_calls.clear()
        out = conv(x, adj, weight)
        assert out.device == x.device
        assert torch.allclose(out.cpu(), EXPECTED), name
        # Sparse inputs must take the fused SpMM path, plain indices not.
        assert len(fused_calls) == (0 if name == 'edge_index' else 1), name


@withDevice
def test_lightgcn_conv_unweighted(device):
    conv = LightGCNConv()
    out = conv(X.to(device), EDGE_INDEX.to(device))
    assert torch.allclose(out.cpu(), torch.tensor([[0., 1.], [2., 1.],
                                                   [0., 1.]]))


@withDevice
def test_lightgcn_conv_gradients_agree(device):
    conv = LightGCNConv()
    target = torch.tensor([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]],
                          device=device)
    grads = {}
    for name, (adj, weight) in _inputs(device).items():
        x = X.clone().to(device).requires_grad_()
        (conv(x, adj, weight) * target).sum().backward()
        grads[name] = x.grad.cpu()
    # d/dx_j sum_i t_i . (sum_j e_ji x_j) = sum_i e_ji t_i:
    expected = torch.tensor([[1.0, 0.25], [0.5, 5.5], [4.0, 1.0]])
    for name, grad in grads.items():
        assert torch.allclose(grad, expected), name


@withDevice
def test_lightgcn_conv_normalize(device):
    # Unweighted path: degrees 1, 2, 1, so every edge weighs 1 / sqrt(2).
    conv = LightGCNConv(normalize=True)
    x = X.to(device)
    s = 2 ** -0.5
    expected = torch.tensor([[0.0, s], [2 * s, s], [0.0, s]])
    csr = sparse_adjacency(EDGE_INDEX.to(device), None, 3)
    for adj in (EDGE_INDEX.to(device), csr):
        assert torch.allclose(conv(x, adj).cpu(), expected)


def test_lightgcn_conv_rejects_weight_with_sparse_tensor():
    csr = sparse_adjacency(EDGE_INDEX, EDGE_WEIGHT, 3)
    with pytest.raises(ValueError, match="'edge_weight' must be None"):
        LightGCNConv()(X, csr, EDGE_WEIGHT)


def test_lightgcn_conv_learnable_weights_on_edge_index():
    # Weights that require gradients take PyG's generic EdgeIndex product.
    conv = LightGCNConv()
    grads = []
    sorted_index, perm = EdgeIndex(EDGE_INDEX, sparse_size=(3, 3)).sort_by(
        'col')
    for adj, weight in ((EDGE_INDEX, EDGE_WEIGHT.clone()),
                        (sorted_index, EDGE_WEIGHT[perm].clone())):
        weight.requires_grad_()
        out = conv(X, adj, weight)
        assert torch.allclose(out, EXPECTED)
        out.sum().backward()
        grads.append(dict(zip(map(tuple, adj.t().tolist()),
                              weight.grad.tolist(), strict=True)))
    # d/de_ji sum(e_ji x_j) = sum(x_j), with x_0, x_1, x_2 summing to 1, 1, 2:
    assert grads[0] == grads[1] == {(0, 1): 1.0, (1, 0): 1.0, (1, 2): 1.0,
                                    (2, 1): 2.0}
