r"""Products with constant sparse graphs for training: the CSR arrays of a
graph and of its transpose are built once, and every product runs as one
fused, weighted :func:`torch.nn.functional.embedding_bag` sum, both in the
forward and in the backward pass.

Used by :class:`~mllmrec_pyg.nn.models.FREEDOM` and
:class:`~mllmrec_pyg.nn.models.SOIL`, which propagate over the same
graphs at every training step: on CPU this is several times faster than
:class:`~mllmrec_pyg.nn.conv.LightGCNConv` over a cached
:class:`~torch_geometric.EdgeIndex` (whose products go through
:func:`torch.sparse.mm`), and the layer mean of LightGCN is a single
autograd node (:class:`_LayerMean`).  Sums may differ from a sparse product
in float rounding.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple, Union

import torch
from torch import Tensor
from torch_geometric import EdgeIndex

#: A CSR matrix as :obj:`(crow_indices, col_indices, values)`.
_CSR = Tuple[Tensor, Tensor, Tensor]

#: The CSR arrays of a propagation :math:`\mathbf{M}` and of its transpose.
_Flow = Tuple[_CSR, _CSR]

#: A cache of :func:`_flow_csr` results by name: the graph's index and
#: weight tensors (to tell when they were replaced) and the arrays.
_FlowCache = Dict[str, Tuple[Tensor, Union[Tensor, None], _Flow]]


def _csr(row: Tensor, col: Tensor, value: Tensor, num_rows: int) -> _CSR:
    r"""The CSR arrays of the matrix with entries :obj:`value` at
    :obj:`(row, col)`, rows in order (stable within a row)."""
    perm = torch.argsort(row, stable=True)
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
    crow[1:] = torch.bincount(row, minlength=num_rows).cumsum(0)
    return crow, col[perm].contiguous(), value[perm].contiguous()


def _flow_csr(edge_index: Tensor, weight: Tensor | None,
              num_nodes: Union[int, Tuple[int, int]]) -> _Flow:
    r"""The CSR arrays of the propagation :math:`\mathbf{M}` of the flow
    graph :obj:`edge_index` (:obj:`[source, target]`, :math:`M_{ts} =
    w_{st}`, as :class:`~mllmrec_pyg.nn.conv.LightGCNConv` propagates)
    and of its transpose, for the backward pass.

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` edges, row 0 the sources,
            row 1 the targets.
        weight (torch.Tensor, optional): :obj:`[E]` edge weights
            (:obj:`None`: all :obj:`1`).
        num_nodes (int or Tuple[int, int]): The number of nodes, or
            :obj:`(num_sources, num_targets)` of a bipartite graph
            (:math:`\mathbf{M}` is then :obj:`[num_targets, num_sources]`).
    """
    if isinstance(num_nodes, int):
        num_src = num_dst = num_nodes
    else:
        num_src, num_dst = num_nodes
    src, dst = edge_index[0], edge_index[1]
    if weight is None:
        weight = torch.ones(src.numel(), device=src.device)
    return (_csr(dst, src, weight, num_dst), _csr(src, dst, weight, num_src))


def _cached_flow_csr(cache: _FlowCache, key: str, index: Tensor,
                     weight: Tensor | None,
                     num_nodes: Union[int, Tuple[int, int]]) -> _Flow:
    r"""The :func:`_flow_csr` arrays of the graph :obj:`index` (an
    :class:`~torch_geometric.EdgeIndex` or a plain :obj:`[2, E]` tensor),
    built once and reused while :obj:`index` and :obj:`weight` are the same
    tensors (a new draw or a device move, :meth:`torch.nn.Module.to`,
    gives new ones)."""
    cached = cache.get(key)
    if cached is None or cached[0] is not index or cached[1] is not weight:
        plain = index.as_tensor() if isinstance(index, EdgeIndex) else index
        cached = (index, weight, _flow_csr(plain, weight, num_nodes))
        cache[key] = cached
    return cached[2]


def _bag_spmm(csr: _CSR, x: Tensor) -> Tensor:
    r"""The product :math:`\mathbf{M} \mathbf{x}` of the CSR matrix
    :obj:`csr` with the dense :obj:`x`, as one fused, weighted embedding-bag
    sum (several times faster than :func:`torch.sparse.mm` on CPU); empty
    rows give zeros."""
    crow, col, value = csr
    return torch.nn.functional.embedding_bag(
        col, x, crow, mode='sum', per_sample_weights=value.to(x.dtype),
        include_last_offset=True)


class _SpMM(torch.autograd.Function):
    r"""Computes :math:`\mathbf{M} \mathbf{x}` for a constant sparse
    :math:`\mathbf{M}` given as the CSR arrays of :math:`\mathbf{M}` and
    :math:`\mathbf{M}^{\top}` (built once per graph), both ways as
    :func:`_bag_spmm`:

    .. math::
        \mathbf{y} = \mathbf{M} \mathbf{x}, \qquad
        \frac{\partial \mathcal{L}}{\partial \mathbf{x}} =
        \mathbf{M}^{\top} \frac{\partial \mathcal{L}}{\partial \mathbf{y}}
    """
    @staticmethod
    def forward(ctx: Any, x: Tensor, fwd: _CSR,  # type: ignore[override]
                bwd: _CSR) -> Tensor:
        ctx.bwd = bwd
        return _bag_spmm(fwd, x)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tuple[Tensor, None, None]:
        return _bag_spmm(ctx.bwd, grad_outputs[0].contiguous()), None, None


class _LayerMean(torch.autograd.Function):
    r"""LightGCN's layer mean

    .. math::
        \frac{1}{L + 1} \sum_{l=0}^{L} \mathbf{M}^l \mathbf{x}

    in one autograd node (the same sums in the same order as layer by
    layer), its backward pass by Horner's rule over
    :math:`\mathbf{M}^{\top}`.  Returns the rows before :obj:`split` (e.g.
    the users) and those from :obj:`split` on (the items) as two outputs."""
    @staticmethod
    def forward(ctx: Any, x: Tensor, fwd: _CSR,  # type: ignore[override]
                bwd: _CSR, num_layers: int, split: int) -> Tuple[Tensor, Tensor]:
        ctx.bwd, ctx.num_layers = bwd, num_layers
        out, h = x, x
        for layer in range(num_layers):
            h = _bag_spmm(fwd, h)
            out = out + h if layer == 0 else out.add_(h)
        out = out.div_(num_layers + 1) if num_layers > 0 else out / 1
        # The two blocks (users, items) as separate outputs: the backward
        # pass joins their gradients without zero-filled slice gradients.
        return out[:split], out[split:]

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tuple[Tensor, None, None, None, None]:
        grad = torch.cat(grad_outputs).div_(ctx.num_layers + 1)
        out = grad
        for _ in range(ctx.num_layers):
            out = _bag_spmm(ctx.bwd, out).add_(grad)
        return out, None, None, None, None


def _spmm(x: Tensor, graph: _Flow) -> Tensor:
    r"""Returns :math:`\mathbf{M} \mathbf{x}` (:class:`_SpMM`) for the
    :func:`_flow_csr` arrays :obj:`graph` of :math:`\mathbf{M}`."""
    out = _SpMM.apply(x, graph[0], graph[1])
    assert isinstance(out, Tensor)
    return out


def _layer_mean(x: Tensor, graph: _Flow, num_layers: int,
                split: int) -> Tuple[Tensor, Tensor]:
    r"""Returns the two blocks of :class:`_LayerMean` of :obj:`x` over the
    :func:`_flow_csr` arrays :obj:`graph`."""
    out = _LayerMean.apply(x, graph[0], graph[1], num_layers, split)
    assert isinstance(out, tuple)
    return out[0], out[1]
