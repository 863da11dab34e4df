from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.nn.adjacency import bipartite_edges, edge_index_adjacency
from mllmrec_pyg.nn.conv import LightGCNConv
from mllmrec_pyg.nn.loss import bpr_loss, embedding_norm_loss
from mllmrec_pyg.nn.models._propagation import (
    check_combination,
    propagate_layers,
)
from mllmrec_pyg.nn.models.base import Recommender


class LightGCN(Recommender):
    r"""The user-item LightGCN of `"LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_, as in MMRec's :obj:`LightGCN`.
    User and item embeddings :math:`\mathbf{E}^{(0)}` are propagated over
    the normalised TRAINING interaction graph :math:`\tilde{\mathbf{A}}`
    (the paper's matrix form) and averaged over layers (Eq. (4)):

    .. math::
        \mathbf{E} = \frac{1}{L + 1} \sum_{l=0}^{L} \tilde{\mathbf{A}}^{l}
        \mathbf{E}^{(0)}, \qquad \hat{y}_{ui} = \mathbf{e}_u^{\top}
        \mathbf{e}_i

    trained with BPR plus :obj:`reg_weight` times MMRec's embedding
    regulariser (:func:`~mllmrec_pyg.nn.loss.embedding_norm_loss`) on the
    batch's layer-0 embeddings.  Embeddings are Xavier-uniform initialised.
    :math:`\tilde{\mathbf{A}}` is built once, as a cached
    :class:`~torch_geometric.EdgeIndex` buffer, and every step propagates
    the whole graph with the fused sparse product of
    :class:`~mllmrec_pyg.nn.conv.LightGCNConv`.  MMRec's settings:
    :obj:`embedding_size=64`, :obj:`n_layers` and :obj:`reg_weight`
    searched over :attr:`MMREC_GRID`; the defaults here are the LightGCN
    paper's (3 layers, :math:`10^{-4}`), a point of that grid.

    .. note::
        Differences from PyG's :class:`torch_geometric.nn.models.LightGCN`
        (same propagation rule, :math:`\mathbf{x}^{(l+1)}_i = \sum_{j}
        \mathbf{x}^{(l)}_j / \sqrt{\deg(i)\deg(j)}`):

        * **Graph.** PyG's model takes a homogeneous :obj:`edge_index` at
          every call and its :class:`~torch_geometric.nn.conv.LGConv`
          layers re-normalise it each time.  Here the graph is fixed: the
          bipartite user-item graph of the TRAINING interactions (users
          first, items offset by :obj:`num_users`, both directions,
          repeated interactions counted once) is normalised once at
          construction (:func:`~mllmrec_pyg.nn.adjacency.bipartite_edges`)
          and kept as a cached :class:`~torch_geometric.EdgeIndex` buffer.
        * **Embeddings.** PyG holds one :class:`~torch.nn.Embedding` over
          all nodes, Xavier-uniform initialised as one
          :obj:`[num_nodes, d]` matrix; here users and items are two
          parameters, each Xavier-uniform initialised on its own shape (as
          MMRec), so the initial scale differs.
        * **Layer combination.** PyG weighs each layer by :obj:`alpha`
          (default :math:`1/(L+1)`, multiplied into every layer); here the
          layers are summed and, for :obj:`combine="mean"`, the sum is
          divided by :math:`L+1` once (same value up to rounding), and
          there are no per-layer weights.
        * **Scoring.** PyG's :meth:`forward` takes :obj:`(edge_index,
          edge_label_index)` over node indices; here :meth:`forward` takes
          user and item indices (separate index spaces) and
          :meth:`embed` returns the user and item halves.  PyG's
          :meth:`recommend` ranks without exclusion and raises for
          :obj:`k` above the candidates; here :meth:`recommend` excludes
          given pairs (e.g. training items) through
          :func:`mllmrec_pyg.utils.topk_items`.  There is no link
          prediction head (:meth:`predict_link`, :meth:`link_pred_loss`).
        * **Loss.** PyG's :meth:`recommendation_loss` adds
          :math:`\lambda \lVert \mathbf{x}^{(0)} \rVert_2^2 / B`
          (squared norm of the embeddings passed); here :meth:`loss` is the
          BPR loss plus MMRec's unsquared
          :func:`~mllmrec_pyg.nn.loss.embedding_norm_loss` of the batch's
          layer-0 user, positive and negative embeddings, computed from the
          triples directly.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        edge_index (torch.Tensor): :obj:`[2, E_train]` TRAINING user -> item
            interactions (:func:`mllmrec_pyg.data.train_edge_index`).
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        num_layers (int, optional): Number of LightGCN layers :math:`L`.
            (default: :obj:`3`)
        reg_weight (float, optional): Regularisation weight.
            (default: :obj:`1e-4`)
        combine (str, optional): Layer combination, :obj:`"mean"` (the
            paper's :math:`\alpha_l = 1/(L+1)`) or :obj:`"sum"`.
            (default: :obj:`"mean"`)
    """

    may_skip_parameters = False  # the loss reaches every parameter

    #: MMRec's hyper-parameter grid (``configs/model/LightGCN.yaml``).
    MMREC_GRID: Dict[str, List[Any]] = {
        'num_layers': [1, 2, 3, 4],
        'reg_weight': [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
    }

    adj: Tensor
    adj_weight: Tensor

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor,
                 embedding_dim: int = 64, num_layers: int = 3,
                 reg_weight: float = 1e-4, combine: str = 'mean'):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"'num_layers' must be >= 0 (got {num_layers})")
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.reg_weight = reg_weight
        self.combine = check_combination(combine)
        self.user_embedding = Parameter(torch.empty(num_users, embedding_dim))
        self.item_embedding = Parameter(torch.empty(num_items, embedding_dim))
        self.conv = LightGCNConv()
        adj, weight = edge_index_adjacency(
            *bipartite_edges(edge_index, num_users, num_items),
            num_users + num_items)
        self.register_buffer('adj', adj, persistent=False)
        self.register_buffer('adj_weight', weight, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters (Xavier-uniform, as MMRec)."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_embedding)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> LightGCN:
        r"""Builds the model over the TRAINING interactions of :obj:`data`.

        Args:
            data (torch_geometric.data.HeteroData): The dataset.
            **kwargs (optional): Other arguments of :class:`LightGCN`.
        """
        return cls(data['user'].num_nodes, data['item'].num_nodes,
                   train_edge_index(data), **kwargs)

    def embed(self) -> Tuple[Tensor, Tensor]:
        x = torch.cat([self.user_embedding, self.item_embedding], dim=0)
        out = propagate_layers(self.conv, x, self.adj, self.num_layers,
                               self.combine, self.adj_weight)
        return out[:self.num_users], out[self.num_users:]

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        user_emb, item_emb = self.embed()
        u, pos, neg = user_emb[user], item_emb[pos_item], item_emb[neg_item]
        loss = bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))
        reg = embedding_norm_loss(self.user_embedding[user],
                                  self.item_embedding[pos_item],
                                  self.item_embedding[neg_item])
        return loss + self.reg_weight * reg

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'reg_weight={self.reg_weight})')
