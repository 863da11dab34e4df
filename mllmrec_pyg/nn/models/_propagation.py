r"""Multi-layer LightGCN propagation with a layer combination."""
from __future__ import annotations

from typing import Literal

from torch import Tensor
from torch_geometric.typing import Adj

from mllmrec_pyg.nn.conv import LightGCNConv

LayerCombination = Literal['sum', 'mean']


def propagate_layers(conv: LightGCNConv, x: Tensor, adj: Adj, num_layers: int,
                     combine: LayerCombination,
                     edge_weight: Tensor | None = None) -> Tensor:
    r"""Returns :math:`\sum_{l=0}^{L} \mathbf{A}^l \mathbf{x}` (or its mean
    over the :math:`L + 1` layers), propagating :obj:`num_layers` times."""
    out = x
    for _ in range(num_layers):
        x = conv(x, adj, edge_weight)
        out = out + x
    if combine == 'mean':
        out = out / (num_layers + 1)
    return out


def check_combination(combine: str) -> LayerCombination:
    r"""Validates a user-given layer combination."""
    if combine == 'sum':
        return 'sum'
    if combine == 'mean':
        return 'mean'
    raise ValueError(f"Unknown layer combination '{combine}' "
                     f"(expected 'sum' or 'mean')")

