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

from mllmrec_pyg.transforms._topk import no_neighbours, unit_rows


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
    # faiss searches float32 vectors on the CPU: normalise those, with
    # NumPy's norms (as this backend always has).
    x_cpu = x.detach().to('cpu', torch.float32)
    norm = torch.from_numpy(np.linalg.norm(x_cpu.numpy(), axis=1))
    unit = unit_rows(x_cpu, k, include_self, compact=True, norm=norm)
    k = unit.k
    if k <= 0:
        return no_neighbours(x)
    z = np.ascontiguousarray(unit.z.numpy(), dtype=np.float32)
    valid = unit.valid.numpy()
    n, dim = z.shape

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
