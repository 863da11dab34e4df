r"""Optional :obj:`faiss` backend (the :obj:`faiss` extra) for the cosine
neighbour search: exact inner product (:obj:`IndexFlatIP`) and approximate
inverted lists (:obj:`IndexIVFFlat`) for catalogues too large for the exact
:math:`O(N^2 d)` search."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "The 'faiss' and 'faiss-ivf' backends need faiss: install the "
            "extra with `pip install mllmrec-pyg[faiss]` (or "
            "`pip install faiss-cpu`), or use backend='torch'") from e
    return faiss


def default_nlist(num_items: int) -> int:
    r"""Inverted lists for :obj:`num_items` vectors: :math:`2\sqrt{N}`, and at
    least 39 training points per list (faiss' minimum)."""
    return max(1, min(int(2 * math.sqrt(num_items)), num_items // 39))


def faiss_topk(
    x: Tensor,
    k: int,
    include_self: bool,
    approximate: bool,
    nlist: Optional[int] = None,
    nprobe: Optional[int] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Cosine top-:obj:`k` with faiss; same contract as
    :func:`~mllmrec_pyg.transforms._topk.cosine_topk` (zero rows isolated,
    self forced first with :obj:`include_self`).  Among equal similarities
    the selection is faiss', then ordered by the lower index."""
    faiss = import_faiss()
    device = x.device
    x_np = x.detach().to('cpu', torch.float32).numpy()
    norm = np.linalg.norm(x_np, axis=1)
    valid = np.flatnonzero(norm > 0)
    z = np.ascontiguousarray(x_np[valid] / norm[valid, None], dtype=np.float32)
    n, dim = z.shape
    k = min(k, n - (0 if include_self else 1))
    empty = torch.empty(0, dtype=torch.long, device=device)
    if k <= 0:
        return empty, empty.clone(), torch.empty(0, dtype=x.dtype, device=device)

    if approximate:
        nlist = nlist or default_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
        # 40 points per list (faiss asks for 39) train the centroids well;
        # k-means time grows with every extra point.
        sample = min(n, 40 * nlist)
        rng = np.random.default_rng(0)
        train = z if sample == n else z[np.sort(rng.choice(n, sample, False))]
        index.train(train)
        index.add(z)
        index.nprobe = min(nlist, nprobe or max(8, nlist // 100))
    else:
        index = faiss.IndexFlatIP(dim)
        index.add(z)

    # One extra hit: the query itself is (almost always) its own best match.
    search_k = min(n, k + 1)
    sim, nbr = index.search(z, search_k)
    query = np.arange(n)[:, None]
    others = (nbr != query) & (nbr >= 0)
    take = k - 1 if include_self else k
    rank = np.cumsum(others, axis=1)
    keep = others & (rank <= take)
    row = np.broadcast_to(query, nbr.shape)[keep]
    col = nbr[keep]
    val = sim[keep].astype(np.float64)
    if include_self:
        row = np.concatenate([row, np.arange(n)])
        col = np.concatenate([col, np.arange(n)])
        val = np.concatenate([val, np.full(n, np.inf)])
    order = np.lexsort((col, -val, row))
    row, col, val = valid[row[order]], valid[col[order]], val[order]
    val[np.isinf(val)] = 1.0

    def to(array: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(device, dtype)

    return to(row, torch.long), to(col, torch.long), to(val, x.dtype)


def knn_recall(
    x: Tensor,
    approx_col: Tensor,
    approx_row: Tensor,
    k: int,
    sample: Tensor,
    alpha: Optional[float] = None,
) -> float:
    r"""Recall@:obj:`k` of an approximate neighbour list against the exact
    cosine top-:obj:`k` (self excluded), over the query items :obj:`sample`.

    :obj:`(approx_row, approx_col)` are the approximate edges (row = query);
    the exact lists are computed for the sample only, against all items.
    With :obj:`alpha`, the exact lists keep only similarities
    :math:`\ge \alpha` (as :class:`ThresholdKNN` does), so the recall is
    that of the thresholded graph.
    """
    from mllmrec_pyg.transforms._topk import ranked_topk

    values_parts, exact_parts = [], []
    norm = x.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    # Blocks of ~256 MiB: each block streams all of x once.
    step = max(1, (1 << 26) // max(1, x.size(0)))
    for start in range(0, sample.numel(), step):
        q = sample[start:start + step]
        # Dividing by the norms after the product keeps memory at one block.
        scores = (x[q] @ x.t()) / norm[q].unsqueeze(1) / norm.unsqueeze(0)
        scores[:, norm <= torch.finfo(x.dtype).tiny] = float('-inf')
        scores[torch.arange(q.numel()), q] = float('-inf')
        block_values, block_exact = ranked_topk(scores, k)
        values_parts.append(block_values)
        exact_parts.append(block_exact)
    values, exact = torch.cat(values_parts), torch.cat(exact_parts)
    hits, total = 0, 0
    order = torch.argsort(approx_row, stable=True)
    approx_row, approx_col = approx_row[order], approx_col[order]
    ptr = torch.searchsorted(approx_row, sample)
    end = torch.searchsorted(approx_row, sample, right=True)
    for i in range(sample.numel()):
        found = set(approx_col[ptr[i]:end[i]].tolist())
        keep = torch.isfinite(values[i])
        if alpha is not None:
            keep &= values[i] >= alpha
        truth = set(exact[i][keep].tolist())
        hits += len(found & truth)
        total += len(truth)
    # Nothing to find (every exact neighbour below alpha) is full recall.
    return hits / total if total else 1.0
