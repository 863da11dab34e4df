from __future__ import annotations

import hashlib
from typing import Any, Callable, Dict, Tuple

import torch
from torch import Tensor

Triple = Tuple[Tensor, Tensor, Tensor]


def tensor_digest(x: Tensor) -> str:
    r"""The SHA-1 of a tensor's dtype, shape and bytes (hashed in blocks of
    rows, so no second copy of a large feature matrix is made)."""
    digest = hashlib.sha1(f'{x.dtype}:{list(x.shape)}'.encode())
    flat = x.detach()
    blocks = flat.split(1 << 14) if flat.dim() > 0 and flat.size(0) else [flat]
    for block in blocks:
        block = block.cpu().contiguous()
        digest.update((block.float() if block.dtype == torch.bfloat16 else block)
                      .numpy().tobytes())
    return digest.hexdigest()


def first_per_row(row: Tensor, k: int) -> Tensor:
    r"""The mask of the first :obj:`k` entries of every row of a list
    sorted by :obj:`row` (the rank of an entry within its row below
    :obj:`k`)."""
    if row.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=row.device)
    start = torch.searchsorted(row, row, right=False)
    rank = torch.arange(row.numel(), device=row.device) - start
    return rank < k


class CandidateCache:
    r"""Remembers the expensive candidate lists of the refined item graph,
    so a sweep over :math:`\alpha` and :math:`K_c` (e.g. ``mllmrec grid
    --grid graph.alpha=... --grid graph.jaccard_k=...``) computes each once:

    * the top-:math:`K_s` cosine neighbours of a feature matrix
      (:class:`ThresholdKNN`): thresholding a fixed top-:math:`K_s` list at
      :math:`\alpha` is a filter of it, so every :math:`\alpha` reuses one
      search;
    * the top-:math:`K_c` Jaccard neighbours of the training edges
      (:class:`JaccardCoOccurrence`): computed once for the largest
      :math:`K_c` asked for (:obj:`jaccard_k`, or the first request), and
      cut per row for smaller ones.  Both lists are sorted by row, then
      score descending, then column, so the cut equals a direct search
      exactly (ties included).

    Entries are keyed by the CONTENT of their inputs (SHA-1 of the
    features or of the edges, with the search settings), never by names,
    so other features or another split can never hit a stale entry.

    With a process group (the :obj:`group` of the transforms), every rank
    keeps its own cache.  A sharded search equals the one-process search,
    so the group is not part of the key; but a miss runs collectives, so
    every rank must make the same requests in the same order (as ranks
    running the same sweep on the same data do).

    .. code-block:: python

        from mllmrec_pyg.transforms import CandidateCache, RefineItemGraph

        cache = CandidateCache(jaccard_k=20)
        for alpha in (0.4, 0.5, 0.6):
            for k_c in (5, 10, 20):
                out = RefineItemGraph(alpha=alpha, jaccard_k=k_c,
                                      candidates=cache)(data.clone())
        print(cache)  # CandidateCache(knn: 1 search, 8 hits; jaccard: ...)

    Args:
        jaccard_k (int, optional): Compute Jaccard lists for at least this
            many neighbours (the largest :math:`K_c` of the sweep), so no
            later, larger request recomputes them. (default: :obj:`0`)
    """
    def __init__(self, jaccard_k: int = 0) -> None:
        if isinstance(jaccard_k, bool) or not isinstance(jaccard_k, int) or jaccard_k < 0:
            raise ValueError(f"CandidateCache: 'jaccard_k' must be a non-negative "
                             f"integer (got {jaccard_k!r})")
        self.jaccard_k = jaccard_k
        self._knn: Dict[Tuple[Any, ...], Triple] = {}
        self._jaccard: Dict[Tuple[Any, ...], Tuple[int, Triple]] = {}
        self.searches = {'knn': 0, 'jaccard': 0}
        self.hits = {'knn': 0, 'jaccard': 0}

    def knn(self, x: Tensor, settings: Tuple[Any, ...],
            compute: Callable[[], Triple]) -> Triple:
        r"""The top-:math:`K_s` list :obj:`(row, col, sim)` of the features
        :obj:`x` searched with :obj:`settings` (k, include_self, backend,
        ...): :obj:`compute()` on the first request, the remembered list
        after."""
        key = (tensor_digest(x), str(x.device), *settings)
        if key in self._knn:
            self.hits['knn'] += 1
            return self._knn[key]
        self.searches['knn'] += 1
        self._knn[key] = compute()
        return self._knn[key]

    def jaccard(self, edge_index: Tensor, num_users: int, num_items: int, k: int,
                compute: Callable[[int], Triple]) -> Triple:
        r"""The top-:obj:`k` Jaccard list :obj:`(row, col, weight)` of the
        training edges :obj:`edge_index`: :obj:`compute(k_max)` once, with
        :obj:`k_max` the largest :math:`K_c` asked for so far (at least
        :obj:`jaccard_k`), then the first :obj:`k` entries of every row."""
        key = (tensor_digest(edge_index), str(edge_index.device), num_users, num_items)
        have = self._jaccard.get(key)
        if have is None or have[0] < k:
            self.searches['jaccard'] += 1
            k_max = max(k, self.jaccard_k)
            have = (k_max, compute(k_max))
            self._jaccard[key] = have
        else:
            self.hits['jaccard'] += 1
        k_max, (row, col, weight) = have
        if k == k_max:  # copies: the caller may own its outputs
            return row.clone(), col.clone(), weight.clone()
        keep = first_per_row(row, k)
        return row[keep], col[keep], weight[keep]

    def clear(self) -> None:
        r"""Forgets every remembered list."""
        self._knn.clear()
        self._jaccard.clear()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(knn: {self.searches['knn']} search(es), "
                f"{self.hits['knn']} hit(s); jaccard: {self.searches['jaccard']} "
                f"search(es), {self.hits['jaccard']} hit(s))")
