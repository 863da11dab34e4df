from typing import Any, Final, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, spmm


class _TransposedSpMM(torch.autograd.Function):
    r"""Computes :math:`\mathbf{A}^{\top} \mathbf{x}` for a column-sorted
    :class:`EdgeIndex` :math:`\mathbf{A}` with constant weights, with plain
    CSR products both ways: the forward pass reads the native CSC layout of
    :math:`\mathbf{A}` as the CSR of :math:`\mathbf{A}^{\top}`, the
    backward pass uses the cached CSR of :math:`\mathbf{A}`.  (PyG's
    generic path runs the slower reduction kernel of
    :func:`torch.sparse.mm`.)"""
    @staticmethod
    def forward(ctx: Any, edge_index: EdgeIndex, value: Optional[Tensor],
                x: Tensor) -> Tensor:
        ctx.save_for_backward(edge_index, value)
        adj_t = edge_index.to_sparse_csc(value).t()
        return torch.sparse.mm(adj_t, x)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tuple[None, None, Tensor]:
        edge_index, value = ctx.saved_tensors
        adj = edge_index.to_sparse_csr(value)
        return None, None, torch.sparse.mm(adj, grad_outputs[0])


class LightGCNConv(MessagePassing):
    r"""The light graph convolution of `"LightGCN: Simplifying and Powering
    Graph Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_ (Eq. (3)), with edge weights, as
    used over the refined item-item graph of `"MLLMRec"
    <https://arxiv.org/abs/2508.15304>`_ (item representation learning)
    and over the user-item graph of the LightGCN baseline:

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)} e_{j,i} \,
        \mathbf{x}_j

    where :math:`e_{j,i}` is the weight of the edge from :math:`j` to
    :math:`i` (:obj:`1` when no weight is given).  With
    :obj:`normalize=True` the weights are first replaced by their symmetric
    normalisation :math:`e_{j,i} / \sqrt{\deg(i)\deg(j)}` (no self-loops);
    by default they are used as given, since graphs of this package arrive
    already normalised (:math:`\mathbf{D}^{-1/2}\mathbf{S}^{*}
    \mathbf{D}^{-1/2}` from :class:`~mllmrec_pyg.transforms.RefineItemGraph`)
    and a model propagates over the same graph at every step.

    The layer has no parameters.  Given a sparse adjacency (a
    :class:`torch.sparse` CSR tensor holding :math:`\mathbf{A}^{\top}` with
    the weights as values, a :class:`torch_sparse.SparseTensor`, or a
    :class:`~torch_geometric.EdgeIndex` sorted by column), it runs as one
    fused sparse-dense matrix product through :meth:`message_and_aggregate`;
    given a plain :obj:`edge_index` it gathers and scatters per edge.  Both
    give the same result on any device.  A CSR tensor has the fastest
    forward product, but PyTorch transposes it again at every backward
    pass; an :class:`~torch_geometric.EdgeIndex` with its cache filled
    (:func:`~mllmrec_pyg.nn.adjacency.edge_index_adjacency`) keeps both
    orientations, so propagation with gradients should use it (constant
    weights then take plain CSR products both ways).

    Args:
        normalize (bool, optional): If set to :obj:`True`, applies the
            symmetric normalisation to the edge weights on every call.
            (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` or a sparse adjacency
          :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """
    SUPPORTS_FUSED_EDGE_INDEX: Final[bool] = True

    def __init__(self, normalize: bool = False, **kwargs):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        self.normalize = normalize

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None) -> Tensor:
        r"""Propagates :obj:`x` once over the graph.

        Args:
            x (torch.Tensor): Node features.
            edge_index (torch.Tensor or SparseTensor or EdgeIndex): The
                graph, as :obj:`[2, E]` indices (row: source, column:
                target), a sparse CSR/COO tensor or
                :class:`torch_sparse.SparseTensor` of the transposed
                adjacency carrying the weights as values, or an
                :class:`~torch_geometric.EdgeIndex`.
            edge_weight (torch.Tensor, optional): Per-edge weights for
                :obj:`[2, E]` indices and :class:`EdgeIndex`.  Must be
                :obj:`None` for sparse tensors, whose values are the
                weights. (default: :obj:`None`)
        """
        if edge_weight is not None and (is_torch_sparse_tensor(edge_index)
                                        or isinstance(edge_index, SparseTensor)):
            raise ValueError("'edge_weight' must be None when the graph is a "
                             "sparse tensor: its values are the weights")
        if self.normalize:
            num_nodes = x.size(self.node_dim)
            if isinstance(edge_index, SparseTensor):
                edge_index = gcn_norm(edge_index, None, num_nodes,
                                      add_self_loops=False, flow=self.flow,
                                      dtype=x.dtype)
            elif is_torch_sparse_tensor(edge_index):
                edge_index, _ = gcn_norm(edge_index, None, num_nodes,
                                         add_self_loops=False, flow=self.flow,
                                         dtype=x.dtype)
            else:
                edge_index, edge_weight = gcn_norm(
                    edge_index, edge_weight, num_nodes, add_self_loops=False,
                    flow=self.flow, dtype=x.dtype)

        # propagate_type: (x: Tensor, edge_weight: OptTensor)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, edge_index: Adj, x: Tensor,
                              edge_weight: OptTensor) -> Tensor:
        if not torch.jit.is_scripting() and isinstance(edge_index, EdgeIndex):
            # EdgeIndex holds A (row: source), so aggregation is A^T x:
            if self.aggr == 'add' and (edge_weight is None
                                       or not edge_weight.requires_grad):
                return _TransposedSpMM.apply(edge_index, edge_weight, x)
            return edge_index.matmul(other=x, input_value=edge_weight,
                                     reduce=self.aggr, transpose=True)
        return spmm(edge_index, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(normalize={self.normalize})'
