r"""The one top-:math:`k` ranking with excluded items, used by
:meth:`mllmrec_pyg.nn.models.Recommender.recommend` and by
:class:`mllmrec_pyg.metrics.Evaluator` (evaluation and its top-:math:`k`
lists)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


@torch.no_grad()
def topk_items(
    user_emb: Tensor,
    item_emb: Tensor,
    user: Tensor,
    k: int,
    exclude: Optional[Tensor] = None,
    batch_size: Optional[int] = None,
) -> Tensor:
    r"""Returns the :obj:`[len(user), min(k, num_items)]` indices of the
    items of highest score for every user of :obj:`user`, best first, where
    the score is the dot product of the representations and the excluded
    pairs score :math:`-\infty`:

    .. math::
        \hat{y}_{ui} = \begin{cases} -\infty & \text{if } (u, i) \in
        \mathcal{X} \\ \mathbf{e}_u^{\top} \mathbf{e}_i &
        \text{otherwise} \end{cases}, \qquad
        \mathrm{top}_k(u) = \operatorname{top-}\!k_i\, \hat{y}_{ui}

    Excluded items are ranked last, not removed: a user with fewer than
    :obj:`k` other items gets them in the trailing positions (drop them with
    a membership test, as :meth:`mllmrec_pyg.metrics.Evaluator.recommend`
    does).  Users are scored :obj:`batch_size` at a time, so memory is
    :math:`O(\text{batch\_size} \cdot |\mathcal{I}|)`.

    Args:
        user_emb (torch.Tensor): :obj:`[num_users, d]` user representations.
        item_emb (torch.Tensor): :obj:`[num_items, d]` item representations.
        user (torch.Tensor): :obj:`[B]` indices of the users to rank for.
        k (int): The number of items per user; at most the catalogue size
            is returned.
        exclude (torch.Tensor, optional): :obj:`[2, M]` pairs (position in
            :obj:`user`, item) that must not be recommended, such as the
            users' training items. (default: :obj:`None`)
        batch_size (int, optional): Users scored at once; :obj:`None`
            scores all of them in one product. (default: :obj:`None`)
    """
    k = min(k, item_emb.size(0))
    step = max(1, user.numel() if batch_size is None else batch_size)
    item_t = item_emb.t()
    row = col = bounds = None
    if exclude is not None and exclude.numel() > 0:
        row, col = exclude[0], exclude[1]
        if step < user.numel():
            # Sorted by position, each chunk's exclusions are one slice.
            row, perm = row.sort(stable=True)
            col = col[perm]
            starts = torch.arange(0, user.numel() + step, step,
                                  device=row.device)
            bounds = torch.searchsorted(row, starts).tolist()
    out = torch.empty(user.numel(), k, dtype=torch.long,
                      device=item_emb.device)
    for i, start in enumerate(range(0, user.numel(), step)):
        chunk = user[start:start + step]
        scores = user_emb[chunk] @ item_t
        if row is not None and col is not None:
            if bounds is None:
                scores[row, col] = float('-inf')
            else:
                first, last = bounds[i], bounds[i + 1]
                scores[row[first:last] - start, col[first:last]] = \
                    float('-inf')
        out[start:start + chunk.numel()] = scores.topk(k, dim=1).indices
    return out
