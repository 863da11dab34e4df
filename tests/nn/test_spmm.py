import torch
from torch.autograd import gradcheck

from mllmrec_pyg.nn._spmm import (
    _cached_flow_csr,
    _flow_csr,
    _layer_mean,
    _LayerMean,
    _SpMM,
    _spmm,
)


def _random_graph(num_src, num_dst, num_edges, seed, dtype=torch.float64):
    # A flow graph (row 0: sources, row 1: targets), no repeated edge, with
    # some targets that receive nothing (empty CSR rows).
    generator = torch.Generator().manual_seed(seed)
    key = torch.randperm(num_src * num_dst, generator=generator)[:num_edges]
    src, dst = key // num_dst, key % num_dst
    keep = dst != num_dst - 1  # the last target is isolated
    edge_index = torch.stack([src[keep], dst[keep]])
    weight = torch.rand(edge_index.size(1), generator=generator, dtype=dtype)
    return edge_index, weight


def _dense(edge_index, weight, num_src, num_dst):
    # M_ts = w_st: target t receives from source s.
    out = torch.zeros(num_dst, num_src, dtype=weight.dtype)
    out.index_put_((edge_index[1], edge_index[0]), weight, accumulate=True)
    return out


def test_flow_csr_arrays():
    edge_index = torch.tensor([[0, 2, 1, 2], [1, 0, 1, 2]])
    weight = torch.tensor([1., 2., 3., 4.])
    (crow, col, value), (crow_t, col_t, value_t) = _flow_csr(
        edge_index, weight, 3)
    # M: row 0 <- 2 (2), row 1 <- 0 (1), 1 (3), row 2 <- 2 (4).
    assert crow.tolist() == [0, 1, 3, 4]
    assert col.tolist() == [2, 0, 1, 2]
    assert value.tolist() == [2., 1., 3., 4.]
    # M^T: row 0 -> 1 (1), row 1 -> 1 (3), row 2 -> 0 (2), 2 (4).
    assert crow_t.tolist() == [0, 1, 2, 4]
    assert col_t.tolist() == [1, 1, 0, 2]
    assert value_t.tolist() == [1., 3., 2., 4.]
    # Bipartite: 3 sources, 2 targets; no weights means ones.
    (crow, _, value), (crow_t, _, _) = _flow_csr(
        torch.tensor([[0, 2], [1, 1]]), None, (3, 2))
    assert crow.tolist() == [0, 0, 2] and value.tolist() == [1., 1.]
    assert crow_t.tolist() == [0, 1, 1, 2]


def test_spmm_matches_dense_and_gradcheck():
    for num_src, num_dst in ((7, 7), (5, 9), (9, 4)):
        edge_index, weight = _random_graph(num_src, num_dst, 20, seed=num_dst)
        graph = _flow_csr(edge_index, weight, (num_src, num_dst))
        matrix = _dense(edge_index, weight, num_src, num_dst)
        x = torch.randn(num_src, 3, dtype=torch.float64, requires_grad=True)
        out = _spmm(x, graph)
        assert out.shape == (num_dst, 3)
        assert torch.allclose(out, matrix @ x)
        assert out[-1].abs().sum() == 0  # the isolated target
        grad = torch.randn(num_dst, 3, dtype=torch.float64)
        (got, ) = torch.autograd.grad(out, x, grad)
        assert torch.allclose(got, matrix.t() @ grad)
        def fn(t, graph=graph):
            return _SpMM.apply(t, graph[0], graph[1])

        assert gradcheck(fn, (x, ))


def test_spmm_float32_casts_weights():
    edge_index, weight = _random_graph(6, 6, 15, seed=1, dtype=torch.float32)
    graph = _flow_csr(edge_index, weight, 6)
    x = torch.randn(6, 4, dtype=torch.float64)
    # float32 weights, float64 input: the product is in float64.
    assert _spmm(x, graph).dtype == torch.float64
    assert torch.allclose(_spmm(x, graph),
                          _dense(edge_index, weight.double(), 6, 6) @ x)


def test_layer_mean_matches_explicit_mean_and_gradcheck():
    n, split = 8, 3
    edge_index, weight = _random_graph(n, n, 25, seed=3)
    graph = _flow_csr(edge_index, weight, n)
    matrix = _dense(edge_index, weight, n, n)
    for num_layers in (0, 1, 2, 3):
        x = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
        layers, h = [x], x
        for _ in range(num_layers):
            h = matrix @ h
            layers.append(h)
        expected = torch.stack(layers).mean(dim=0)
        first, second = _layer_mean(x, graph, num_layers, split)
        assert first.shape == (split, 5) and second.shape == (n - split, 5)
        assert torch.allclose(torch.cat([first, second]), expected)
        grad = torch.randn(n, 5, dtype=torch.float64)
        (got, ) = torch.autograd.grad([first, second], x,
                                      [grad[:split], grad[split:]])
        (want, ) = torch.autograd.grad(expected, x, grad)
        assert torch.allclose(got, want)

        def fn(t, num_layers=num_layers):
            return _LayerMean.apply(t, graph[0], graph[1], num_layers, split)

        assert gradcheck(fn, (x, ))
    # One output used only (e.g. all rows in the first block): the other
    # block's gradient is zero.
    x = torch.randn(n, 2, dtype=torch.float64, requires_grad=True)
    whole, rest = _layer_mean(x, graph, 2, n)
    assert rest.shape == (0, 2)
    whole.sum().backward()
    ones = torch.ones(n, 2, dtype=torch.float64)
    expected = (ones + matrix.t() @ ones + matrix.t() @ (matrix.t() @ ones)) / 3
    assert x.grad is not None and torch.allclose(x.grad, expected)


def test_cached_flow_csr_reuses_until_replaced():
    edge_index, weight = _random_graph(5, 5, 10, seed=4, dtype=torch.float32)
    cache = {}
    first = _cached_flow_csr(cache, 'g', edge_index, weight, 5)
    assert _cached_flow_csr(cache, 'g', edge_index, weight, 5) is first
    # A new weight tensor (e.g. after Module.double()) or index rebuilds.
    assert _cached_flow_csr(cache, 'g', edge_index, weight.double(),
                            5) is not first
    again = _cached_flow_csr(cache, 'g', edge_index.clone(), weight, 5)
    assert again is not first
    assert all(torch.equal(a, b) for a, b in zip(again[0], first[0],
                                                 strict=True))
