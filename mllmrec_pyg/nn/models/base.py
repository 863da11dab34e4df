r"""The interface every recommender of this package implements, so that one
trainer and one evaluator serve them all."""
from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders trained by
    :class:`mllmrec_pyg.train.Trainer`.

    A recommender scores a user-item pair by the dot product of the two
    representations returned by :meth:`embed`, and learns from
    (user, positive item, negative item) triples through :meth:`loss`.
    """

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> Recommender:
        r"""Builds the recommender for the users, items and TRAINING
        interactions of :obj:`data`, with :obj:`kwargs` as further
        constructor arguments."""
        raise NotImplementedError

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        r"""Returns the scalar training loss of a batch of triples: the mean
        BPR loss plus the model's own regularisation.

        Args:
            user (torch.Tensor): User indices, shape :obj:`[B]`.
            pos_item (torch.Tensor): Indices of training items of
                :obj:`user`, shape :obj:`[B]`.
            neg_item (torch.Tensor): Sampled negative items, shape :obj:`[B]`.
        """
        raise NotImplementedError

    def embed(self) -> Tuple[Tensor, Tensor]:
        r"""Returns the final user and item representations,
        :obj:`[num_users, d]` and :obj:`[num_items, d]`, whose dot products
        are the ranking scores.  Called under :func:`torch.no_grad` in
        evaluation mode by the evaluator, once per evaluation."""
        raise NotImplementedError

    @torch.no_grad()
    def recommend(self, user: Tensor, k: int, exclude: Tensor | None = None) -> Tensor:
        r"""Returns the indices of the top-:obj:`k` items for :obj:`user`.

        Args:
            user (torch.Tensor): User indices, shape :obj:`[B]`.
            k (int): Number of items per user.
            exclude (torch.Tensor, optional): :obj:`[2, M]` (row in
                :obj:`user`, item) pairs that must not be recommended, such
                as the users' training items. (default: :obj:`None`)
        """
        user_emb, item_emb = self.embed()
        scores = user_emb[user] @ item_emb.t()
        if exclude is not None and exclude.numel() > 0:
            scores[exclude[0], exclude[1]] = float('-inf')
        return scores.topk(k, dim=-1).indices
