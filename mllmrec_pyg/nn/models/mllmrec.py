from __future__ import annotations

from typing import Any, Literal, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Embedding, LeakyReLU, Linear, Sequential
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.nn.adjacency import (
    bipartite_edges,
    edge_index_adjacency,
    normalized_adjacency,
    sparse_adjacency,
)
from mllmrec_pyg.nn.conv import LightGCNConv
from mllmrec_pyg.nn.loss import bpr_loss, embedding_norm_loss
from mllmrec_pyg.nn.models._propagation import (
    check_combination,
    propagate_layers,
)
from mllmrec_pyg.nn.models.base import Recommender

#: The refined item-item relation written by
#: :class:`mllmrec_pyg.transforms.RefineItemGraph`.
ITEM_SIMILAR: Tuple[str, str, str] = ('item', 'similar', 'item')

UserInit = Literal['features', 'random']


def item_graph_propagation(
    x: Tensor,
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    num_layers: int = 1,
) -> Tensor:
    r"""The item representation learning of `"MLLMRec"
    <https://arxiv.org/abs/2508.15304>`_ (Eq. 12): a parameter-free
    LightGCN over the refined item-item graph :math:`\hat{\mathbf{S}}`
    whose layers are summed,

    .. math::
        \bar{\mathbf{E}} = \sum_{l=0}^{L} \hat{\mathbf{S}}^{l}\,
        \mathbf{E}, \qquad \mathbf{E}^{(l+1)}_i = \sum_{j}
        \hat{S}_{ij}\, \mathbf{E}^{(l)}_j

    with :math:`\mathbf{E}` the item description embeddings.  As both
    inputs are frozen, :class:`MLLMRec` computes it once, at construction
    (its buffer :obj:`item_input`).  Each layer is one fused sparse product
    of :class:`~mllmrec_pyg.nn.conv.LightGCNConv` over the CSR
    :func:`~mllmrec_pyg.utils.sparse_adjacency`.

    Args:
        x (torch.Tensor): Item features :math:`\mathbf{E}`,
            :obj:`[num_items, F]`.
        edge_index (torch.Tensor): :obj:`[2, E]` entries :math:`(i, j)` of
            :math:`\hat{\mathbf{S}}` in matrix coordinates, as
            :class:`~mllmrec_pyg.transforms.NormalizeItemGraph` writes them:
            item :obj:`edge_index[0]` receives from :obj:`edge_index[1]`.
        edge_weight (torch.Tensor, optional): :obj:`[E]` values
            :math:`\hat{S}_{ij}`, taken as given (cast to the dtype of
            :obj:`x`).  If :obj:`None`, the binary graph is normalised as
            :math:`\mathbf{D}^{-1/2}\mathbf{S}\mathbf{D}^{-1/2}` with row
            sums as degrees. (default: :obj:`None`)
        num_layers (int, optional): The number of layers :math:`L`;
            :obj:`0` returns :obj:`x`. (default: :obj:`1`)
    """
    if num_layers < 0:
        raise ValueError(f"'num_layers' must be >= 0 (got {num_layers})")
    if num_layers == 0:
        return x
    num_items = x.size(0)
    # Matrix convention of the item graph: row 0 receives, so the message
    # flows from edge_index[1] to edge_index[0].
    flow_index = edge_index.flip(0)
    if edge_weight is None:
        adj = normalized_adjacency(flow_index, None, num_items)
    else:
        adj = sparse_adjacency(flow_index, edge_weight.to(x.dtype), num_items)
    return propagate_layers(LightGCNConv(), x, adj.to(x.device), num_layers,
                            'sum')


def _check_inputs(user_x: Tensor | None, item_x: Tensor,
                  num_users: int | None, user_init: str, item_layers: int,
                  ui_layers: int) -> int:
    r"""Validates the arguments of :class:`MLLMRec` and returns the number
    of users."""
    if user_init not in ('features', 'random'):
        raise ValueError(f"Unknown user_init '{user_init}' (expected "
                         f"'features' or 'random')")
    if item_layers < 0 or ui_layers < 0:
        raise ValueError(f"Layer counts must be >= 0 (got item_layers="
                         f"{item_layers}, ui_layers={ui_layers})")
    if item_x.dim() != 2:
        raise ValueError(f"'item_x' must be [num_items, F] "
                         f"(got shape {list(item_x.shape)})")
    if user_init == 'features':
        if user_x is None:
            raise ValueError("user_init='features' needs user features "
                             "(data['user'].x, the encoded preferences); "
                             "encode them first or pass "
                             "user_init='random'")
        if user_x.dim() != 2:
            raise ValueError(f"'user_x' must be [num_users, F] "
                             f"(got shape {list(user_x.shape)})")
        if num_users is not None and num_users != user_x.size(0):
            raise ValueError(f"'user_x' has {user_x.size(0)} rows but "
                             f"there are {num_users} users: encode one "
                             f"preference per user")
        return user_x.size(0)
    if num_users is None:
        if user_x is None:
            raise ValueError("user_init='random' needs 'num_users'")
        return user_x.size(0)
    return num_users


def _mlp(in_channels: int, hidden_channels: int, out_channels: int,
         negative_slope: float) -> Sequential:
    r"""The two-layer LeakyReLU MLP that maps users and items into the
    scoring space."""
    return Sequential(
        Linear(in_channels, hidden_channels),
        LeakyReLU(negative_slope),
        Linear(hidden_channels, out_channels),
    )


class MLLMRec(Recommender):
    r"""The recommender of `"MLLMRec: A Preference Reasoning Paradigm with
    Graph Refinement for Multimodal Recommendation"
    <https://arxiv.org/abs/2508.15304>`_.

    Items start from their frozen description embeddings
    :math:`\mathbf{e}_i` (all-MiniLM-L6-v2, 384-d), propagated over the
    refined, symmetrically normalised item-item graph
    :math:`\hat{\mathbf{S}}` with a sum of LightGCN layers (the paper's item
    representation learning, Eq. 12, :func:`item_graph_propagation`):

    .. math::
        \bar{\mathbf{e}}_i = \sum_{l=0}^{L} \left(\hat{\mathbf{S}}^{l}
        \mathbf{E}\right)_i

    Users start from the embeddings :math:`\mathbf{e}_u` of their reasoned
    preferences.  Two MLPs map both into the scoring space:

    .. math::
        \mathbf{h}_u = \mathbf{W}_2^{u}\,\mathrm{LeakyReLU}(\mathbf{W}_1^{u}
        \mathbf{e}_u + \mathbf{b}_1^{u}) + \mathbf{b}_2^{u}, \qquad
        \mathbf{h}_i = \mathbf{W}_2^{i}\,\mathrm{LeakyReLU}(\mathbf{W}_1^{i}
        \bar{\mathbf{e}}_i + \mathbf{b}_1^{i}) + \mathbf{b}_2^{i}

    and a user-item pair scores :math:`\hat{y}_{ui} = \mathbf{h}_u^{\top}
    \mathbf{h}_i`, trained with BPR over one uniformly sampled negative
    per training interaction.

    As the inputs :math:`\mathbf{E}` and :math:`\hat{\mathbf{S}}` are fixed,
    :math:`\bar{\mathbf{E}}` is computed once, at construction, and kept as
    the buffer :obj:`item_input`: training only runs the MLPs on the rows of
    the batch (the reference implementation re-propagates every batch).

    With :obj:`ui_layers > 0` (the paper's "w/ user-item LightGCN"
    variant), the MLP outputs are additionally propagated over the TRAINING
    user-item graph :math:`\tilde{\mathbf{A}}` (symmetrically normalised),
    as the reference implementation does: rows are
    :math:`L_2`-normalised, the :obj:`ui_layers` LightGCN layers combined by
    :obj:`ui_combine`, and the result added to the MLP output,
    :math:`\mathbf{H} \leftarrow \mathbf{H} + \sum_{l=0}^{L_{ui}}
    \tilde{\mathbf{A}}^{l}\,\mathrm{normalize}(\mathbf{H})`.  This needs
    every user and item at every batch.

    Ablations: :obj:`item_layers=0` is "w/o item GCN"
    (:math:`\bar{\mathbf{e}}_i = \mathbf{e}_i`); :obj:`user_init="random"`
    is "w/o reasoning": the preference embeddings are replaced by a
    learnable, Xavier-initialised :obj:`[num_users, in_channels]` ID
    embedding table that goes through the same user MLP, i.e. the
    behaviour-agnostic user initialisation of conventional multimodal
    recommenders that the paper's reasoning replaces (a frozen random input
    would leave users with no trainable per-user representation at all).
    "w/o denoising" and "w/o Jaccard enhancement" change the item graph,
    not the model: build it with
    :obj:`RefineItemGraph(alpha=None)` or :obj:`RefineItemGraph(jaccard_k=0)`.

    All :class:`~torch.nn.Linear` weights and the ID embeddings are
    Xavier-uniform initialised, biases are zero.

    Args:
        user_x (torch.Tensor, optional): User preference embeddings
            :obj:`[num_users, F_u]`, frozen.  Required when
            :obj:`user_init="features"`, ignored otherwise.
        item_x (torch.Tensor): Item description embeddings
            :obj:`[num_items, F]`, frozen.
        item_edge_index (torch.Tensor, optional): :obj:`[2, E]` entries
            :math:`(i, j)` of :math:`\hat{\mathbf{S}}` in matrix coordinates,
            as :class:`~mllmrec_pyg.transforms.NormalizeItemGraph` writes
            them: item :obj:`edge_index[0]` receives from
            :obj:`edge_index[1]` (the graph need not be symmetric).  Required
            when :obj:`item_layers > 0`. (default: :obj:`None`)
        item_edge_weight (torch.Tensor, optional): :obj:`[E]` values
            :math:`\hat{S}_{ij}`, taken as given (already normalised).  If
            :obj:`None`, the binary graph is normalised as
            :math:`\mathbf{D}^{-1/2}\mathbf{S}\mathbf{D}^{-1/2}` with row
            sums as degrees. (default: :obj:`None`)
        num_users (int, optional): The number of users; needed only when
            :obj:`user_x` is :obj:`None`. (default: :obj:`None`)
        hidden_channels (int, optional): Hidden size :math:`d_1` of the
            MLPs. (default: :obj:`256`)
        out_channels (int, optional): Output size :math:`d` of the MLPs.
            (default: :obj:`64`)
        item_layers (int, optional): LightGCN layers :math:`L` over the item
            graph; :obj:`0` removes the item GCN. (default: :obj:`1`)
        ui_layers (int, optional): LightGCN layers over the training
            user-item graph after the MLPs; :obj:`0` disables them.
            (default: :obj:`0`)
        ui_edge_index (torch.Tensor, optional): :obj:`[2, E_train]` TRAINING
            user -> item interactions, required when :obj:`ui_layers > 0`.
            (default: :obj:`None`)
        ui_combine (str, optional): How the user-item layers are combined,
            :obj:`"sum"` (the reference implementation) or :obj:`"mean"`.
            (default: :obj:`"sum"`)
        user_init (str, optional): :obj:`"features"` (preference embeddings)
            or :obj:`"random"` (learnable ID embeddings, "w/o reasoning").
            (default: :obj:`"features"`)
        reg_weight (float, optional): Weight of MMRec's embedding
            regulariser (:func:`~mllmrec_pyg.nn.loss.embedding_norm_loss`)
            on the batch's scoring embeddings; the paper uses none.
            (default: :obj:`0.0`)
        negative_slope (float, optional): Slope of the LeakyReLU.
            (default: :obj:`0.01`)
    """

    may_skip_parameters = False  # the loss reaches every parameter

    item_input: Tensor
    user_input: Tensor | None
    ui_adj: Tensor | None
    ui_weight: Tensor | None

    def __init__(
        self,
        user_x: Tensor | None,
        item_x: Tensor,
        item_edge_index: Tensor | None = None,
        item_edge_weight: Tensor | None = None,
        *,
        num_users: int | None = None,
        hidden_channels: int = 256,
        out_channels: int = 64,
        item_layers: int = 1,
        ui_layers: int = 0,
        ui_edge_index: Tensor | None = None,
        ui_combine: str = 'sum',
        user_init: str = 'features',
        reg_weight: float = 0.0,
        negative_slope: float = 0.01,
    ):
        super().__init__()
        num_users = _check_inputs(user_x, item_x, num_users, user_init,
                                  item_layers, ui_layers)
        self.num_users = num_users
        self.num_items = item_x.size(0)
        self.in_channels = item_x.size(1)
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.item_layers = item_layers
        self.ui_layers = ui_layers
        self.ui_combine = check_combination(ui_combine)
        self.user_init = user_init
        self.reg_weight = reg_weight

        self.conv = LightGCNConv()
        self.register_buffer('item_input',
                             self._item_input(item_x, item_edge_index,
                                              item_edge_weight),
                             persistent=False)
        user_channels = self._init_user_input(user_x)
        self.user_mlp = _mlp(user_channels, hidden_channels, out_channels,
                             negative_slope)
        self.item_mlp = _mlp(self.in_channels, hidden_channels, out_channels,
                             negative_slope)
        self._init_user_item_graph(ui_edge_index)
        self.reset_parameters()

    def _item_input(self, item_x: Tensor, edge_index: Tensor | None,
                    edge_weight: Tensor | None) -> Tensor:
        r"""The frozen item input :math:`\bar{\mathbf{E}}` (Eq. 12),
        computed once."""
        item_x = item_x.detach().float()
        if self.item_layers == 0:
            return item_x
        if edge_index is None:
            raise ValueError("item_layers > 0 needs the item-item graph "
                             "('item_edge_index'); build it with "
                             "mllmrec_pyg.transforms.RefineItemGraph or "
                             "pass item_layers=0")
        with torch.no_grad():
            return item_graph_propagation(
                item_x, edge_index,
                None if edge_weight is None else edge_weight.detach(),
                self.item_layers)

    def _init_user_input(self, user_x: Tensor | None) -> int:
        r"""Registers the frozen preference embeddings, or the learnable ID
        embeddings of :obj:`user_init="random"`; returns their size."""
        self.user_embedding: Embedding | None = None
        if self.user_init == 'features':
            assert user_x is not None
            self.register_buffer('user_input', user_x.detach().float(),
                                 persistent=False)
            return user_x.size(1)
        self.register_buffer('user_input', None, persistent=False)
        self.user_embedding = Embedding(self.num_users, self.in_channels)
        return self.in_channels

    def _init_user_item_graph(self, ui_edge_index: Tensor | None) -> None:
        r"""Registers the normalised TRAINING user-item graph of
        :obj:`ui_layers > 0` (or :obj:`None` buffers)."""
        if self.ui_layers == 0:
            self.register_buffer('ui_adj', None, persistent=False)
            self.register_buffer('ui_weight', None, persistent=False)
            return
        if ui_edge_index is None:
            raise ValueError("ui_layers > 0 needs the TRAINING "
                             "interactions ('ui_edge_index', from "
                             "mllmrec_pyg.data.train_edge_index)")
        ui_adj, ui_weight = edge_index_adjacency(
            *bipartite_edges(ui_edge_index, self.num_users, self.num_items),
            self.num_users + self.num_items)
        self.register_buffer('ui_adj', ui_adj, persistent=False)
        self.register_buffer('ui_weight', ui_weight, persistent=False)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module (Xavier-uniform
        weights, zero biases)."""
        for mlp in (self.user_mlp, self.item_mlp):
            for module in mlp:
                if isinstance(module, Linear):
                    torch.nn.init.xavier_uniform_(module.weight)
                    torch.nn.init.zeros_(module.bias)
        if self.user_embedding is not None:
            torch.nn.init.xavier_uniform_(self.user_embedding.weight)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> MLLMRec:
        r"""Builds the model from a dataset: :obj:`data['user'].x` (the
        encoded preferences, unless :obj:`user_init="random"`),
        :obj:`data['item'].x`, the refined item graph
        :obj:`data['item', 'similar', 'item']` (:obj:`edge_index` and
        optional :obj:`edge_weight`, unless :obj:`item_layers=0`) and, for
        :obj:`ui_layers > 0`, the TRAINING interactions through
        :func:`~mllmrec_pyg.data.train_edge_index`.

        Args:
            data (torch_geometric.data.HeteroData): The dataset.
            **kwargs (optional): Other arguments of :class:`MLLMRec`.
        """
        item_x = getattr(data['item'], 'x', None)
        if item_x is None:
            raise ValueError("data['item'].x is missing: encode the item "
                             "descriptions first (all-MiniLM-L6-v2, 384-d)")
        if item_x.size(0) != data['item'].num_nodes:
            raise ValueError(f"data['item'].x has {item_x.size(0)} rows but "
                             f"there are {data['item'].num_nodes} items")
        user_init = kwargs.get('user_init', 'features')
        user_x = getattr(data['user'], 'x', None)
        if user_init == 'features' and user_x is None:
            raise ValueError("data['user'].x is missing: encode the user "
                             "preferences first, or pass user_init='random' "
                             "(the 'w/o reasoning' ablation)")
        item_edge_index = item_edge_weight = None
        if kwargs.get('item_layers', 1) > 0:
            if ITEM_SIMILAR not in data.edge_types:
                raise ValueError(
                    "data has no ('item', 'similar', 'item') graph: apply "
                    "mllmrec_pyg.transforms.RefineItemGraph first, or pass "
                    "item_layers=0 (the 'w/o item GCN' ablation)")
            store = data[ITEM_SIMILAR]
            item_edge_index = store.edge_index
            item_edge_weight = getattr(store, 'edge_weight', None)
        if kwargs.get('ui_layers', 0) > 0:
            kwargs.setdefault('ui_edge_index', train_edge_index(data))
        kwargs.setdefault('num_users', data['user'].num_nodes)
        return cls(user_x, item_x, item_edge_index, item_edge_weight,
                   **kwargs)

    def _user_input(self, user: Tensor | None = None) -> Tensor:
        if self.user_embedding is not None:
            weight = self.user_embedding.weight
        else:
            assert self.user_input is not None
            weight = self.user_input
        return weight if user is None else weight[user]

    def _propagate_user_item(self, user_emb: Tensor,
                             item_emb: Tensor) -> Tuple[Tensor, Tensor]:
        assert self.ui_adj is not None
        x = F.normalize(torch.cat([user_emb, item_emb], dim=0), dim=-1)
        z = propagate_layers(self.conv, x, self.ui_adj, self.ui_layers,
                             self.ui_combine, self.ui_weight)
        return (user_emb + z[:self.num_users], item_emb + z[self.num_users:])

    def embed(self) -> Tuple[Tensor, Tensor]:
        user_emb = self.user_mlp(self._user_input())
        item_emb = self.item_mlp(self.item_input)
        if self.ui_layers > 0:
            user_emb, item_emb = self._propagate_user_item(user_emb, item_emb)
        return user_emb, item_emb

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        if self.ui_layers > 0:
            user_emb, item_emb = self.embed()
            u, pos, neg = user_emb[user], item_emb[pos_item], item_emb[neg_item]
        else:
            # MLPs act row-wise: only the batch's rows are needed.
            u = self.user_mlp(self._user_input(user))
            items = self.item_mlp(self.item_input[torch.cat([pos_item,
                                                             neg_item])])
            pos, neg = items[:pos_item.numel()], items[pos_item.numel():]
        loss = bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))
        if self.reg_weight != 0:
            loss = loss + self.reg_weight * embedding_norm_loss(u, pos, neg)
        return loss

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, in_channels={self.in_channels}, '
                f'hidden_channels={self.hidden_channels}, '
                f'out_channels={self.out_channels}, '
                f'item_layers={self.item_layers}, '
                f'ui_layers={self.ui_layers}, user_init={self.user_init})')
