r"""The alignment and uniformity of user and item representations, from
`"Towards Representation Alignment and Uniformity in Collaborative
Filtering" <https://arxiv.org/abs/2206.12811>`_ (Wang et al., KDD 2022,
DirectAU), who carry the two properties of Wang and Isola (ICML 2020) over
to recommendation: positive (user, item) pairs should lie close together
(low alignment) and the representations should spread over the unit
hypersphere (low uniformity).

Both are computed on :math:`\ell_2`-normalised representations
:math:`\tilde{f}(x) = f(x) / \|f(x)\|_2` (a zero vector stays zero), in
:obj:`float64`, and returned as 0-dimensional tensors (differentiable, so
they can also serve as DirectAU's loss terms).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor


def _normalize(x: Tensor) -> Tensor:
    return F.normalize(x.to(torch.float64), p=2.0, dim=-1)


def alignment(user_emb: Tensor, item_emb: Tensor, pairs: Tensor,
              alpha: float = 2.0) -> Tensor:
    r"""The alignment of positive (user, item) pairs (Wang et al., KDD
    2022), the mean :math:`\alpha`-th power of the distance between the
    normalised representations of each pair :math:`(u, i) \in \mathcal{P}`:

    .. math::
        \ell_{\mathrm{align}} = \frac{1}{|\mathcal{P}|} \sum_{(u, i) \in
        \mathcal{P}} \left\| \tilde{f}(u) - \tilde{f}(i) \right\|_2^{\alpha}

    It lies in :math:`[0, 2^{\alpha}]`; :math:`0` when every user coincides
    in direction with its items.

    Args:
        user_emb (torch.Tensor): :obj:`[num_users, d]` user representations.
        item_emb (torch.Tensor): :obj:`[num_items, d]` item representations.
        pairs (torch.Tensor): :obj:`[2, P]` positive pairs (row 0: user
            index, row 1: item index), e.g. the test edges of
            :func:`~mllmrec_pyg.data.split_edge_index`; a repeated pair
            counts once per copy.
        alpha (float, optional): The exponent :math:`\alpha > 0`.
            (default: :obj:`2.0`, the paper's)
    """
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f'pairs must be a [2, P] tensor of (user, item) indices, got '
                         f'shape {list(pairs.shape)}')
    if pairs.size(1) == 0:
        raise ValueError('alignment needs at least one positive (user, item) pair')
    if alpha <= 0:
        raise ValueError(f'alpha must be positive, got {alpha}')
    pairs = pairs.to(user_emb.device)
    user = _normalize(user_emb)[pairs[0]]
    item = _normalize(item_emb.to(user_emb.device))[pairs[1]]
    return (user - item).norm(p=2, dim=-1).pow(alpha).mean()


def uniformity(x: Tensor, t: float = 2.0, max_points: Optional[int] = 10000,
               generator: Optional[torch.Generator] = None,
               block_size: int = 512) -> Tensor:
    r"""The uniformity of representations (Wang et al., KDD 2022;
    Wang and Isola, ICML 2020), the logarithm of the mean Gaussian
    potential over the distinct pairs of points of :obj:`x`:

    .. math::
        \ell_{\mathrm{uniform}} = \log \frac{2}{N (N - 1)} \sum_{a < b}
        e^{-t \left\| \tilde{f}(x_a) - \tilde{f}(x_b) \right\|_2^2}

    It lies in :math:`[-4t, 0]`: :math:`0` when all points coincide,
    :math:`-4t` for two antipodal points; lower is more uniform.

    The sum runs over all distinct pairs, :obj:`block_size` rows of the
    :math:`N \times N` distance matrix at a time (memory
    :math:`O(\text{block\_size} \cdot N)`, a log-sum-exp per block, so no
    term underflows).  With more than :obj:`max_points` points it runs
    exactly over the pairs of a uniform sample of :obj:`max_points` of them
    drawn without replacement by :obj:`generator`: an unbiased estimate,
    the same on every call with the same generator state.

    Args:
        x (torch.Tensor): :obj:`[N, d]` representations (:math:`N \geq 2`).
        t (float, optional): The temperature :math:`t > 0`.
            (default: :obj:`2.0`, the paper's)
        max_points (int, optional): The most points whose pairs are summed
            (:obj:`None`: all). (default: :obj:`10000`)
        generator (torch.Generator, optional): Draws the sample of points.
            (default: :obj:`None`, a CPU generator seeded with :obj:`0`, so
            the value is reproducible)
        block_size (int, optional): Rows of the distance matrix computed at
            once. (default: :obj:`512`)
    """
    if x.dim() != 2:
        raise ValueError(f'x must be a [N, d] tensor, got shape {list(x.shape)}')
    if x.size(0) < 2:
        raise ValueError(f'uniformity needs at least two points, got {x.size(0)}')
    if t <= 0:
        raise ValueError(f't must be positive, got {t}')
    if max_points is not None and max_points < 2:
        raise ValueError(f'max_points must be at least 2, got {max_points}')
    if block_size < 1:
        raise ValueError(f'block_size must be positive, got {block_size}')
    if max_points is not None and x.size(0) > max_points:
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        index = torch.randperm(x.size(0), generator=generator,
                               device=generator.device)[:max_points]
        x = x[index.to(x.device)]
    z = _normalize(x)
    n = z.size(0)
    blocks = []
    for start in range(0, n, block_size):
        rows = z[start:start + block_size]
        # ||a - b||^2 = 2 - 2 a.b for unit vectors (clamped: rounding).
        squared = (2.0 - 2.0 * rows @ z.t()).clamp(min=0.0)
        logits = -t * squared
        diagonal = torch.arange(rows.size(0), device=z.device)
        logits = logits.index_put((diagonal, diagonal + start),
                                  torch.tensor(-math.inf, dtype=logits.dtype,
                                               device=z.device))
        blocks.append(torch.logsumexp(logits.reshape(-1), dim=0))
    # The ordered pairs a != b: each distinct pair twice, the same mean.
    return torch.logsumexp(torch.stack(blocks), dim=0) - math.log(n * (n - 1))


def user_item_uniformity(user_emb: Tensor, item_emb: Tensor, t: float = 2.0,
                         max_points: Optional[int] = 10000,
                         generator: Optional[torch.Generator] = None) -> Tensor:
    r"""DirectAU's uniformity of a recommender (Wang et al., KDD 2022,
    the uniformity term of the DirectAU loss), the mean of the uniformity of the users and that of the items,
    each by :func:`uniformity`:

    .. math::
        \ell_{\mathrm{uniform}}^{\mathcal{U}, \mathcal{I}} = \frac{1}{2}
        \left( \ell_{\mathrm{uniform}}(\mathcal{U}) +
        \ell_{\mathrm{uniform}}(\mathcal{I}) \right)

    Args:
        user_emb (torch.Tensor): :obj:`[num_users, d]` user representations.
        item_emb (torch.Tensor): :obj:`[num_items, d]` item representations.
        t (float, optional): The temperature :math:`t > 0`.
            (default: :obj:`2.0`)
        max_points (int, optional): The most points of each side whose pairs
            are summed (:obj:`None`: all). (default: :obj:`10000`)
        generator (torch.Generator, optional): Draws the samples of points,
            the users' first. (default: :obj:`None`, a generator seeded with
            :obj:`0` for each side)
    """
    users = uniformity(user_emb, t=t, max_points=max_points, generator=generator)
    items = uniformity(item_emb, t=t, max_points=max_points, generator=generator)
    return (users + items) / 2


#: The most points per side whose pairs :func:`representation_summary`
#: sums (a seeded sample beyond).
SUMMARY_POINTS = 4096


def representation_summary(user_emb: Tensor, item_emb: Tensor, pairs: Tensor,
                           alpha: float = 2.0, t: float = 2.0,
                           max_points: Optional[int] = SUMMARY_POINTS
                           ) -> Dict[str, Union[float, int, None]]:
    r"""The alignment and uniformity of a recommender's representations on
    one split, as Wang et al. (KDD 2022) measure them on test data: the
    :func:`alignment` of the split's distinct positive pairs, the
    :func:`uniformity` of the distinct users and of the distinct items of
    those pairs, and their mean (:func:`user_item_uniformity`).

    Returns a mapping with :obj:`'alignment'`, :obj:`'uniformity_user'`,
    :obj:`'uniformity_item'`, :obj:`'uniformity'` (floats; :obj:`None` for a
    side with fewer than two points), :obj:`'num_pairs'`,
    :obj:`'num_users'` and :obj:`'num_items'`.

    Args:
        user_emb (torch.Tensor): :obj:`[num_users, d]` user representations.
        item_emb (torch.Tensor): :obj:`[num_items, d]` item representations.
        pairs (torch.Tensor): :obj:`[2, P]` positive (user, item) pairs of
            the split (de-duplicated here).
        alpha (float, optional): The exponent of :func:`alignment`.
            (default: :obj:`2.0`)
        t (float, optional): The temperature of :func:`uniformity`.
            (default: :obj:`2.0`)
        max_points (int, optional): The most points of each side whose pairs
            :func:`uniformity` sums, a sample seeded with :obj:`0` beyond
            (the evaluate stage's cost stays about a second at Sports
            scale). (default: :obj:`4096`, :data:`SUMMARY_POINTS`)
    """
    pairs = torch.unique(pairs.to(user_emb.device), dim=1)
    users, items = torch.unique(pairs[0]), torch.unique(pairs[1])
    sides: Dict[str, Optional[float]] = {}
    for side, emb, index in (('user', user_emb, users), ('item', item_emb, items)):
        sides[side] = (float(uniformity(emb[index.to(emb.device)], t=t,
                                        max_points=max_points))
                       if index.numel() >= 2 else None)
    user_side, item_side = sides['user'], sides['item']
    return {
        'alignment': float(alignment(user_emb, item_emb, pairs, alpha=alpha)),
        'uniformity_user': user_side,
        'uniformity_item': item_side,
        'uniformity': (user_side + item_side) / 2
        if user_side is not None and item_side is not None else None,
        'num_pairs': int(pairs.size(1)),
        'num_users': int(users.numel()),
        'num_items': int(items.numel()),
    }
