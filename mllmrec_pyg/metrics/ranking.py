r"""Top-:math:`K` ranking metrics with MMRec's exact definitions
(``utils/metrics.py`` of MMRec), computed per user from a hit matrix.

Every function takes :obj:`hits`, a :obj:`[B, K_max]` boolean matrix whose
entry :math:`(u, r)` says whether the item a model ranked at position
:math:`r + 1` for user :math:`u` is one of the user's held-out items
:math:`T_u`, and :obj:`num_relevant` (:math:`|T_u|`, shape :obj:`[B]`), and
returns one value per user (shape :obj:`[B]`).  Averaging over users gives
MMRec's reported figure.  Nothing here loops over users in Python.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: The metric names :func:`ranking_metrics` computes, in report order.
RANKING_METRICS = ('recall', 'ndcg', 'precision', 'map', 'hit')


def _check(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    if hits.dim() != 2 or num_relevant.dim() != 1 or hits.size(0) != num_relevant.size(0):
        raise ValueError(f'Expected hits [B, K] and num_relevant [B], got '
                         f'{tuple(hits.shape)} and {tuple(num_relevant.shape)}')
    if not 1 <= k <= hits.size(1):
        raise ValueError(f'k={k} is outside the ranked lists of length {hits.size(1)}')
    return hits[:, :k].to(torch.float64)


def recall_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Recall@:math:`K`, the share of the held-out items found in the top
    :math:`K`:

    .. math::
        \mathrm{Recall}_u@K = \frac{\sum_{r=1}^{K} \mathrm{rel}_u(r)}{|T_u|}
    """
    return _check(hits, num_relevant, k).sum(dim=1) / num_relevant.to(torch.float64)


def precision_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Precision@:math:`K`, the share of the top :math:`K` that is held out:

    .. math::
        \mathrm{Precision}_u@K = \frac{1}{K} \sum_{r=1}^{K} \mathrm{rel}_u(r)
    """
    return _check(hits, num_relevant, k).sum(dim=1) / k


def hit_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Hit@:math:`K` (hit ratio), one when any held-out item is in the top
    :math:`K`:

    .. math::
        \mathrm{Hit}_u@K = \mathbb{1}\left[\sum_{r=1}^{K} \mathrm{rel}_u(r) > 0\right]
    """
    return (_check(hits, num_relevant, k).sum(dim=1) > 0).to(torch.float64)


def ndcg_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""NDCG@:math:`K` with binary relevance, the ideal DCG taken over
    :math:`\min(|T_u|, K)` hits (MMRec's ``ndcg_``):

    .. math::
        \mathrm{NDCG}_u@K = \frac{\sum_{r=1}^{K} \mathrm{rel}_u(r) / \log_2(r + 1)}
        {\sum_{r=1}^{\min(|T_u|, K)} 1 / \log_2(r + 1)}
    """
    rel = _check(hits, num_relevant, k)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64,
                                             device=rel.device))
    dcg = (rel * discount).sum(dim=1)
    ideal = torch.cat([discount.new_zeros(1), discount.cumsum(0)])
    return dcg / ideal[num_relevant.clamp(max=k)]


def map_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""MAP@:math:`K`, average precision normalised by
    :math:`\min(|T_u|, K)` (MMRec's ``map_``):

    .. math::
        \mathrm{AP}_u@K = \frac{1}{\min(|T_u|, K)} \sum_{r=1}^{K}
        \mathrm{Precision}_u@r \cdot \mathrm{rel}_u(r)
    """
    rel = _check(hits, num_relevant, k)
    ranks = torch.arange(1, k + 1, dtype=torch.float64, device=rel.device)
    precision = rel.cumsum(dim=1) / ranks
    return (precision * rel).sum(dim=1) / num_relevant.clamp(max=k).to(torch.float64)


_FUNCTIONS = {
    'recall': recall_at_k,
    'ndcg': ndcg_at_k,
    'precision': precision_at_k,
    'map': map_at_k,
    'hit': hit_at_k,
}


def ranking_metrics(hits: Tensor, num_relevant: Tensor, ks: Sequence[int] = (5, 10, 20, 50),
                    metrics: Sequence[str] = RANKING_METRICS) -> dict[str, Tensor]:
    r"""Returns every metric of :obj:`metrics` at every cut-off of :obj:`ks`
    as per-user :obj:`[B]` float64 tensors keyed :obj:`'recall@20'` etc.

    Args:
        hits (torch.Tensor): :obj:`[B, K_max]` boolean hit matrix of the
            ranked lists (:obj:`K_max >= max(ks)`).
        num_relevant (torch.Tensor): :obj:`[B]` number of held-out items of
            each user, at least one.
        ks (Sequence[int]): The cut-offs. (default: :obj:`(5, 10, 20, 50)`)
        metrics (Sequence[str]): Names among :obj:`'recall'`, :obj:`'ndcg'`,
            :obj:`'precision'`, :obj:`'map'`, :obj:`'hit'`.
            (default: all five)
    """
    if num_relevant.numel() > 0 and int(num_relevant.min()) < 1:
        raise ValueError('Every evaluated user needs at least one held-out item')
    out: dict[str, Tensor] = {}
    for name in metrics:
        if name not in _FUNCTIONS:
            raise ValueError(f"Unknown ranking metric '{name}' (expected one of "
                             f"{', '.join(_FUNCTIONS)})")
        for k in ks:
            out[f'{name}@{k}'] = _FUNCTIONS[name](hits, num_relevant, k)
    return out
