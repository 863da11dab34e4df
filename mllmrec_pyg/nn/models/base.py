r"""The interface every recommender of this package implements, so that one
trainer and one evaluator serve them all."""
from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mllmrec_pyg.utils.ranking import topk_items


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders trained by
    :class:`mllmrec_pyg.train.Trainer`.

    A recommender scores a user-item pair by the dot product of the two
    representations returned by :meth:`embed`,

    .. math::
        \hat{y}_{ui} = \mathbf{h}_u^{\top} \mathbf{h}_i,

    which :meth:`forward` returns for given pairs (so :obj:`model(user,
    item)` scores them, as a PyG link predictor scores
    :obj:`edge_label_index`), and learns from (user, positive item, negative
    item) triples through :meth:`loss`.  Subclasses implement
    :meth:`from_data`, :meth:`embed` and :meth:`loss`.

    A subclass whose :meth:`loss` always reaches every parameter sets
    :obj:`may_skip_parameters = False`: multi-process training
    (:class:`~torch.nn.parallel.DistributedDataParallel`) then skips the
    per-step search of the autograd graph for parameters without a gradient
    (:obj:`find_unused_parameters`), which the safe default :obj:`True`
    pays for.
    """

    #: Whether :meth:`loss` may leave some parameters without a gradient.
    may_skip_parameters: bool = True

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

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Returns the scores :math:`\hat{y}_{ui} = \mathbf{h}_u^{\top}
        \mathbf{h}_i` of the pairs :obj:`(user[b], item[b])`, the dot
        products of the rows of :meth:`embed`, with gradients when called
        in training.

        Args:
            user (torch.Tensor): User indices, shape :obj:`[B]`.
            item (torch.Tensor): Item indices, shape :obj:`[B]`.
        """
        user_emb, item_emb = self.embed()
        return (user_emb[user] * item_emb[item]).sum(dim=-1)

    @torch.no_grad()
    def recommend(self, user: Tensor, k: int,
                  exclude: Tensor | None = None) -> Tensor:
        r"""Returns the :obj:`[B, min(k, num_items)]` indices of the
        top-ranked items for :obj:`user`, best first, with
        :func:`mllmrec_pyg.utils.topk_items` (the ranking of
        :class:`mllmrec_pyg.metrics.Evaluator`): excluded items are ranked
        last.

        Args:
            user (torch.Tensor): User indices, shape :obj:`[B]`.
            k (int): Number of items per user.
            exclude (torch.Tensor, optional): :obj:`[2, M]` (row in
                :obj:`user`, item) pairs that must not be recommended, such
                as the users' training items. (default: :obj:`None`)
        """
        user_emb, item_emb = self.embed()
        return topk_items(user_emb, item_emb, user, k, exclude)
