r"""The one builder of :class:`torch.sparse_csr` adjacency matrices, used by
the graph transforms (:class:`~mllmrec_pyg.transforms.NormalizeItemGraph`'s
:obj:`adj_t`) and by the models' propagation
(:mod:`mllmrec_pyg.nn.adjacency`)."""
from __future__ import annotations

import warnings

from torch import Tensor
from torch_geometric.utils import to_torch_csr_tensor


def check_graph(edge_index: Tensor, edge_weight: Tensor | None,
                num_nodes: int) -> None:
    r"""Raises a :class:`ValueError` unless :obj:`edge_index` is a
    :obj:`[2, E]` index into :obj:`num_nodes` nodes and :obj:`edge_weight`
    (if given) has one entry per edge.

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` indices.
        edge_weight (torch.Tensor, optional): :obj:`[E]` weights.
        num_nodes (int): The number of nodes.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E] "
                         f"(got {list(edge_index.shape)})")
    if edge_weight is not None and edge_weight.numel() != edge_index.size(1):
        raise ValueError(f"'edge_weight' has {edge_weight.numel()} entries "
                         f"for {edge_index.size(1)} edges")
    if edge_index.numel() > 0 and int(edge_index.max()) >= num_nodes:
        raise ValueError(f"'edge_index' refers to node {int(edge_index.max())}"
                         f" but the graph has {num_nodes} nodes")


def sparse_adjacency(edge_index: Tensor, edge_weight: Tensor | None,
                     num_nodes: int) -> Tensor:
    r"""Returns the transposed adjacency :math:`\mathbf{A}^{\top}` of the
    graph as a :class:`torch.sparse_csr` tensor whose values are the edge
    weights (:obj:`1` when :obj:`edge_weight` is :obj:`None`):

    .. math::
        \left(\mathbf{A}^{\top}\right)_{ji} = e_{i,j} \quad
        \text{for every edge } (i, j) \in \mathcal{E}

    so row :math:`j` lists the in-edges of node :math:`j`: this is PyG's
    :obj:`adj_t` layout (row = receiving node), the one
    :class:`~mllmrec_pyg.nn.conv.LightGCNConv` aggregates with, and
    :obj:`adj_t @ x` is one propagation step.  A matrix given in its own
    coordinates (entry :math:`M_{ij}` at :obj:`(edge_index[0],
    edge_index[1])`, as the item graphs of
    :mod:`mllmrec_pyg.transforms` are) is built by passing
    :obj:`edge_index.flip(0)`.  Duplicate edges are summed (PyG's
    :func:`~torch_geometric.utils.to_torch_csr_tensor`).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` indices (row: source,
            column: target).
        edge_weight (torch.Tensor, optional): :obj:`[E]` weights, or
            :obj:`None` for unit weights.
        num_nodes (int): The number of nodes.
    """
    check_graph(edge_index, edge_weight, num_nodes)
    with warnings.catch_warnings():
        # torch warns on CSR construction that it does not validate the
        # indices (check_graph has just done so) and that CSR is in beta
        # (the layout and the SpMM we use it for are stable since 2.0).
        warnings.filterwarnings('ignore', category=UserWarning,
                                message='Sparse invariant checks')
        warnings.filterwarnings('ignore', category=UserWarning,
                                message='Sparse CSR tensor support is in beta')
        return to_torch_csr_tensor(edge_index.flip(0), edge_weight,
                                   size=(num_nodes, num_nodes))
