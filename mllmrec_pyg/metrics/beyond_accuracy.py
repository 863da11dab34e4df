r"""Beyond-accuracy metrics of ranked lists: catalogue coverage and novelty."""
from __future__ import annotations

import torch
from torch import Tensor


def catalogue_coverage(topk: Tensor, num_items: int, k: int) -> float:
    r"""Catalogue coverage@:math:`K`, the share of the catalogue that appears
    in at least one user's top :math:`K`:

    .. math::
        \mathrm{Coverage}@K = \frac{\left|\bigcup_{u} L_u@K\right|}{|\mathcal{I}|}

    Args:
        topk (torch.Tensor): :obj:`[B, K_max]` ranked item indices.
        num_items (int): Size of the catalogue :math:`|\mathcal{I}|`.
        k (int): The cut-off.
    """
    if topk.numel() == 0:
        return 0.0
    seen = torch.zeros(num_items, dtype=torch.bool, device=topk.device)
    seen[topk[:, :k].reshape(-1)] = True
    return float(seen.sum()) / num_items


def novelty(topk: Tensor, popularity: Tensor, num_users: int, k: int) -> Tensor:
    r"""Per-user novelty@:math:`K`, the mean self-information of the
    recommended items (Zhou et al., PNAS 2010), where :math:`n_i` is the
    number of TRAINING users of item :math:`i`:

    .. math::
        \mathrm{Novelty}_u@K = \frac{1}{K} \sum_{i \in L_u@K}
        -\log_2 \frac{\max(n_i, 1)}{|\mathcal{U}|}

    Items never seen in training count as seen once, so the value stays
    finite.  Higher means less popular recommendations.

    Args:
        topk (torch.Tensor): :obj:`[B, K_max]` ranked item indices.
        popularity (torch.Tensor): :obj:`[num_items]` training interaction
            counts :math:`n_i`.
        num_users (int): Number of users :math:`|\mathcal{U}|`.
        k (int): The cut-off.
    """
    share = popularity.to(torch.float64).clamp(min=1.0) / num_users
    return (-torch.log2(share))[topk[:, :k]].mean(dim=1)
