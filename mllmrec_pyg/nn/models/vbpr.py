from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor
from torch.nn import Linear, Parameter
from torch_geometric.data import HeteroData

from mllmrec_pyg.nn.loss import bpr_loss, embedding_norm_loss
from mllmrec_pyg.nn.models.base import Recommender

#: Item feature attributes VBPR concatenates, in MMRec's order (text, then
#: vision).  The text slot takes the dataset's own :obj:`text_feat` (MMRec's
#: ``text_feat.npy``) when there is one, else :obj:`x` (e.g. MiniLM
#: embeddings of the item text).
VBPR_FEATURES: Tuple[Tuple[str, ...], ...] = (('text_feat', 'x'), ('image_feat',))


class VBPR(Recommender):
    r"""Visual BPR of `"VBPR: Visual Bayesian Personalized Ranking from
    Implicit Feedback" <https://arxiv.org/abs/1510.01784>`_, in MMRec's
    version: an item is the concatenation of a free ID embedding
    :math:`\mathbf{q}_i \in \mathbb{R}^d` and a linear projection of its
    frozen content features :math:`\mathbf{f}_i` (MMRec concatenates text
    and image features), a user is one free vector of size :math:`2d`:

    .. math::
        \hat{y}_{ui} = \mathbf{p}_u^{\top} \left[\mathbf{q}_i \,\Vert\,
        \mathbf{W} \mathbf{f}_i + \mathbf{b}\right]

    trained with BPR plus :obj:`reg_weight` times MMRec's embedding
    regulariser (:func:`~mllmrec_pyg.nn.loss.embedding_norm_loss`) on the
    batch's user, positive and negative item vectors.  As in MMRec, the
    user and ID embeddings are Xavier-uniform and the projection
    Xavier-normal (zero bias) initialised, and there are no bias terms in
    the score.  MMRec's settings: :obj:`embedding_size=64`,
    :obj:`reg_weight` searched over :attr:`MMREC_GRID`.

    Args:
        num_users (int): The number of users.
        item_features (torch.Tensor): :obj:`[num_items, F]` frozen item
            content features.
        embedding_dim (int, optional): Size :math:`d` of the ID part and of
            the projected features. (default: :obj:`64`)
        reg_weight (float, optional): Regularisation weight.
            (default: :obj:`1e-3`)
    """

    may_skip_parameters = False  # the loss reaches every parameter

    #: MMRec's hyper-parameter grid (``configs/model/VBPR.yaml``).
    MMREC_GRID: Dict[str, List[Any]] = {
        'reg_weight': [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
    }

    item_features: Tensor

    def __init__(self, num_users: int, item_features: Tensor,
                 embedding_dim: int = 64, reg_weight: float = 1e-3):
        super().__init__()
        if item_features.dim() != 2:
            raise ValueError(f"'item_features' must be [num_items, F] "
                             f"(got shape {list(item_features.shape)})")
        self.num_users = num_users
        self.num_items = item_features.size(0)
        self.embedding_dim = embedding_dim
        self.reg_weight = reg_weight
        self.register_buffer('item_features', item_features.detach().float(),
                             persistent=False)
        self.user_embedding = Parameter(torch.empty(num_users,
                                                    2 * embedding_dim))
        self.item_embedding = Parameter(torch.empty(self.num_items,
                                                    embedding_dim))
        self.item_linear = Linear(item_features.size(1), embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters (as MMRec)."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_embedding)
        torch.nn.init.xavier_normal_(self.item_linear.weight)
        torch.nn.init.zeros_(self.item_linear.bias)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> VBPR:
        r"""Builds the model from :obj:`data`, concatenating the item's
        text features (:obj:`data['item'].text_feat`, the dataset's own,
        else :obj:`data['item'].x`) and vision features
        (:obj:`data['item'].image_feat`), those present, in that order.

        Args:
            data (torch_geometric.data.HeteroData): The dataset.
            **kwargs (optional): Other arguments of :class:`VBPR`.
        """
        feats = []
        for names in VBPR_FEATURES:
            found = [getattr(data['item'], n) for n in names
                     if getattr(data['item'], n, None) is not None]
            if found:
                feats.append(found[0])
        if len(feats) == 0:
            raise ValueError("VBPR needs item features: data['item'].text_feat"
                             " / .x (text) and .image_feat (vision) are all "
                             "missing; encode the item text first")
        features = torch.cat([f.float() for f in feats], dim=-1)
        return cls(data['user'].num_nodes, features, **kwargs)

    def _item(self, item: Tensor | None = None) -> Tensor:
        ids: Tensor = self.item_embedding
        feats = self.item_features
        if item is not None:
            ids, feats = ids[item], feats[item]
        return torch.cat([ids, self.item_linear(feats)], dim=-1)

    def embed(self) -> Tuple[Tensor, Tensor]:
        return self.user_embedding, self._item()

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        u = self.user_embedding[user]
        # The projection acts row-wise: only the batch's items are needed.
        items = self._item(torch.cat([pos_item, neg_item]))
        pos, neg = items[:pos_item.numel()], items[pos_item.numel():]
        loss = bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))
        return loss + self.reg_weight * embedding_norm_loss(u, pos, neg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, '
                f'feature_channels={self.item_features.size(1)}, '
                f'embedding_dim={self.embedding_dim}, '
                f'reg_weight={self.reg_weight})')
