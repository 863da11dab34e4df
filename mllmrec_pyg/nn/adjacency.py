r"""Sparse adjacency matrices built once and reused by every propagation,
so that :class:`~mllmrec_pyg.nn.conv.LightGCNConv` takes its fused
sparse-dense product path.

Two layouts, by use: a :class:`torch.sparse_csr` tensor
(:func:`sparse_adjacency`, the package's one CSR builder, defined in
:mod:`mllmrec_pyg.utils.sparse` and re-exported here) has the fastest
forward product, but its backward pass transposes it at every call; a
column-sorted :class:`~torch_geometric.EdgeIndex` with its cache filled
(:func:`edge_index_adjacency`) keeps both orientations, so propagation that
needs gradients uses it."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce

from mllmrec_pyg.utils.sparse import check_graph, sparse_adjacency

__all__ = [
    'sparse_adjacency',
    'normalized_adjacency',
    'edge_index_adjacency',
    'bipartite_edges',
    'bipartite_adjacency',
]


def normalized_adjacency(edge_index: Tensor, edge_weight: Tensor | None,
                         num_nodes: int) -> Tensor:
    r"""Returns :func:`sparse_adjacency` of the symmetrically normalised
    graph :math:`\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` (no
    self-loops; isolated nodes keep zero rows).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` indices (row: source,
            column: target).
        edge_weight (torch.Tensor, optional): :obj:`[E]` weights.
        num_nodes (int): The number of nodes.
    """
    check_graph(edge_index, edge_weight, num_nodes)
    index, weight = gcn_norm(edge_index, edge_weight, num_nodes,
                             add_self_loops=False)
    return sparse_adjacency(index, weight, num_nodes)


def edge_index_adjacency(edge_index: Tensor, edge_weight: Tensor | None,
                         num_nodes: int) -> Tuple[EdgeIndex, Tensor | None]:
    r"""Returns the graph as a column-sorted
    :class:`~torch_geometric.EdgeIndex` with its cache (both orientations)
    filled, and the edge weights in the same order, ready for
    :class:`~mllmrec_pyg.nn.conv.LightGCNConv`'s fused path with gradients.

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` indices (row: source,
            column: target).
        edge_weight (torch.Tensor, optional): :obj:`[E]` weights.
        num_nodes (int): The number of nodes.
    """
    check_graph(edge_index, edge_weight, num_nodes)
    index = EdgeIndex(edge_index.contiguous(),
                      sparse_size=(num_nodes, num_nodes))
    index, perm = index.sort_by('col')
    if edge_weight is not None and perm is not None:
        edge_weight = edge_weight[perm]
    index.fill_cache_()
    return index, edge_weight


def bipartite_edges(edge_index: Tensor, num_users: int, num_items: int,
                    normalize: bool = True) -> Tuple[Tensor, Tensor]:
    r"""Returns the edges and weights of the symmetric user-item adjacency of
    LightGCN (its matrix form, `"LightGCN" <https://arxiv.org/abs/2002.02126>`_)
    over :obj:`num_users + num_items` nodes, users first:

    .. math::
        \tilde{\mathbf{A}} = \mathbf{D}^{-1/2}
        \begin{pmatrix} \mathbf{0} & \mathbf{R} \\ \mathbf{R}^{\top} &
        \mathbf{0} \end{pmatrix} \mathbf{D}^{-1/2}

    where :math:`\mathbf{R}` is the binary interaction matrix (a repeated
    interaction counts once, as in MMRec) and :math:`\mathbf{D}` the degree
    matrix.  Pass only TRAINING interactions
    (:func:`mllmrec_pyg.data.train_edge_index`).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` user -> item interactions
            (row 0: user index, row 1: item index).
        num_users (int): The number of users.
        num_items (int): The number of items.
        normalize (bool, optional): If set to :obj:`False`, the weights are
            all :obj:`1`. (default: :obj:`True`)
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"Interactions must have shape [2, E] "
                         f"(got {list(edge_index.shape)})")
    if edge_index.numel() > 0:
        if int(edge_index[0].max()) >= num_users:
            raise ValueError(f"Interaction refers to user "
                             f"{int(edge_index[0].max())} but there are "
                             f"{num_users} users")
        if int(edge_index[1].max()) >= num_items:
            raise ValueError(f"Interaction refers to item "
                             f"{int(edge_index[1].max())} but there are "
                             f"{num_items} items")
    num_nodes = num_users + num_items
    user, item = edge_index[0], edge_index[1] + num_users
    index = torch.cat([torch.stack([user, item]), torch.stack([item, user])],
                      dim=1)
    index = coalesce(index, num_nodes=num_nodes)
    if normalize:
        index, weight = gcn_norm(index, None, num_nodes, add_self_loops=False)
        return index, weight
    return index, torch.ones(index.size(1), device=index.device)


def bipartite_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                        normalize: bool = True) -> Tensor:
    r"""Returns :func:`bipartite_edges` as a :func:`sparse_adjacency` (CSR).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` user -> item interactions.
        num_users (int): The number of users.
        num_items (int): The number of items.
        normalize (bool, optional): If set to :obj:`False`, returns the
            binary adjacency. (default: :obj:`True`)
    """
    index, weight = bipartite_edges(edge_index, num_users, num_items,
                                    normalize)
    return sparse_adjacency(index, weight, num_users + num_items)
