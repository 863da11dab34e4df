r"""Sparse, block-wise Jaccard top-:math:`k` of item audiences.

The intersection counts :math:`|\mathcal{U}_i \cap \mathcal{U}_j|` are the
entries of :math:`\mathbf{R}\mathbf{R}^{\top}` for the binary
:obj:`[items, users]` interaction matrix :math:`\mathbf{R}`; a sparse product
only produces the pairs that share at least one user, so nothing of size
:obj:`items x items` or :obj:`items x users` is ever dense.  The product is
computed for blocks of item rows whose output size is bounded in advance.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from mllmrec_pyg.transforms._distributed import (
    gather_rows,
    group_shard,
    shard_bounds,
)
from mllmrec_pyg.utils.progress import progress_bar

#: Upper bound on the non-zeros of one block of R R^T (about 50 MiB of
#: intermediate arrays).
_BLOCK_NONZEROS = 1 << 20


def _block_bounds(work: np.ndarray, budget: int) -> list:
    # work[i] bounds the non-zeros of row i of R R^T; a single item above
    # budget still gets a block of its own.
    bounds = [0]
    total = 0
    for i, w in enumerate(work.tolist()):
        if total + w > budget and i > bounds[-1]:
            bounds.append(i)
            total = 0
        total += w
    bounds.append(len(work))
    return bounds


def jaccard_topk(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    k: int,
    block_nonzeros: int = _BLOCK_NONZEROS,
    progress: bool = False,
    item_range: Optional[tuple[int, int]] = None,
    group: Optional[ProcessGroup] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per item, the :obj:`k` other items of largest Jaccard similarity of
    their audiences in :obj:`edge_index` (:obj:`[2, E]`, row 0 user, row 1
    item; repeated pairs count once).

    Pairs without a common user (Jaccard :obj:`0`) and the diagonal are never
    selected.  Ties are broken by the lower item index.  Returns
    :obj:`(row, col, jaccard)` (:obj:`jaccard` in float64) on
    :obj:`edge_index.device`, sorted by row, then Jaccard descending, then
    column ascending.  With :obj:`progress`, a bar over the items on a
    terminal.

    With :obj:`item_range` :obj:`(a, b)`, only the rows of the items
    :math:`a \le i < b` are computed; with a process :obj:`group`, each rank
    computes the rows of its contiguous block of items
    (:func:`~mllmrec_pyg.distributed.shard_bounds`) and the blocks are
    gathered in rank order, so every rank returns the full result.  Both
    equal the corresponding rows of the full computation exactly: a row
    depends only on its own intersection counts (integers) and set sizes,
    not on the block it is computed in.
    """
    if group is not None:
        rank, world = group_shard(group)
        part = jaccard_topk(edge_index, num_users, num_items, k,
                            block_nonzeros, progress and rank == 0,
                            shard_bounds(num_items, rank, world))
        row, col, jac = gather_rows(part, group)
        return row, col, jac
    device = edge_index.device
    user, item = edge_index.detach().cpu().numpy().astype(np.int64)
    ones = np.ones(user.size, dtype=np.int64)
    R = sp.csr_matrix((ones, (item, user)), shape=(num_items, num_users))
    R.sum_duplicates()
    R.data[:] = 1
    Rt = R.T.tocsr()
    size = np.diff(R.indptr)
    work = R @ np.diff(Rt.indptr)

    lo, hi = (0, num_items) if item_range is None else item_range
    rows, cols, vals = [], [], []
    bounds = [lo + b for b in _block_bounds(work[lo:hi], block_nonzeros)]
    bar = progress_bar(hi - lo, 'Jaccard', progress, unit='item')
    for start, end in zip(bounds[:-1], bounds[1:], strict=False):
        bar.update(end - start)
        C = (R[start:end] @ Rt).tocsr()
        C.sum_duplicates()
        r = np.repeat(np.arange(start, end), np.diff(C.indptr))
        c = C.indices.astype(np.int64)
        inter = C.data.astype(np.float64)
        off_diag = r != c
        r, c, inter = r[off_diag], c[off_diag], inter[off_diag]
        jac = inter / (size[r] + size[c] - inter)
        order = np.lexsort((c, -jac, r))
        r, c, jac = r[order], c[order], jac[order]
        rank = np.arange(r.size) - np.searchsorted(r, r, side='left')
        keep = rank < k
        rows.append(r[keep])
        cols.append(c[keep])
        vals.append(jac[keep])

    bar.close()

    def cat(parts: list, dtype: type) -> Tensor:
        array = np.concatenate(parts) if parts else np.empty(0, dtype)
        return torch.from_numpy(np.ascontiguousarray(array, dtype)).to(device)

    return cat(rows, np.int64), cat(cols, np.int64), cat(vals, np.float64)
