from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor
from torch.nn import Embedding
from torch_geometric.data import HeteroData

from mllmrec_pyg.nn.loss import bpr_loss, embedding_norm_loss
from mllmrec_pyg.nn.models.base import Recommender


class BPRMF(Recommender):
    r"""Matrix factorisation trained with Bayesian Personalized Ranking, from
    `"BPR: Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1205.2618>`_, as in MMRec's :obj:`BPR`:

    .. math::
        \hat{y}_{ui} = \mathbf{p}_u^{\top} \mathbf{q}_i, \qquad
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \lambda \frac{1}{B}
        \left(\lVert \mathbf{P}_B \rVert_F + \lVert \mathbf{Q}_{B^+}
        \rVert_F + \lVert \mathbf{Q}_{B^-} \rVert_F\right)

    with MMRec's (unsquared) embedding regulariser
    :func:`~mllmrec_pyg.nn.loss.embedding_norm_loss` over the batch's user,
    positive and negative item embeddings, and Xavier-normal initialised
    embeddings.  MMRec's settings: :obj:`embedding_size=64` and
    :obj:`reg_weight` searched over :attr:`MMREC_GRID` (selected on
    validation Recall@20).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        reg_weight (float, optional): Regularisation weight :math:`\lambda`.
            (default: :obj:`1e-3`)
    """

    may_skip_parameters = False  # the loss reaches every parameter

    #: MMRec's hyper-parameter grid (``configs/model/BPR.yaml``).
    MMREC_GRID: Dict[str, List[Any]] = {
        'reg_weight': [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
    }

    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64, reg_weight: float = 1e-3):
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.reg_weight = reg_weight
        self.user_embedding = Embedding(num_users, embedding_dim)
        self.item_embedding = Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters (Xavier-normal, as MMRec)."""
        torch.nn.init.xavier_normal_(self.user_embedding.weight)
        torch.nn.init.xavier_normal_(self.item_embedding.weight)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> BPRMF:
        r"""Builds the model for the users and items of :obj:`data`.

        Args:
            data (torch_geometric.data.HeteroData): The dataset.
            **kwargs (optional): Other arguments of :class:`BPRMF`.
        """
        return cls(data['user'].num_nodes, data['item'].num_nodes, **kwargs)

    def embed(self) -> Tuple[Tensor, Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        u = self.user_embedding(user)
        pos = self.item_embedding(pos_item)
        neg = self.item_embedding(neg_item)
        loss = bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))
        return loss + self.reg_weight * embedding_norm_loss(u, pos, neg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, embedding_dim={self.embedding_dim}, '
                f'reg_weight={self.reg_weight})')
