r"""Dense, sort-based oracles the sparse transforms are checked against."""
import math

import torch


def dense_cosine(x: torch.Tensor, self_score: float = -math.inf):
    r"""Returns :obj:`(sim, valid, order)`: the full cosine matrix with zero
    rows/columns at :obj:`-inf` and the diagonal at :obj:`self_score`, the
    non-zero mask, and each row's columns sorted by similarity descending,
    ties to the lower index."""
    norm = x.norm(dim=1)
    valid = norm > 0
    z = x / norm.clamp_min(1e-300).unsqueeze(1)
    sim = z @ z.t()
    sim[~valid] = -math.inf
    sim[:, ~valid] = -math.inf
    sim.fill_diagonal_(self_score)
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    return sim, valid, order
