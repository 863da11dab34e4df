r"""Exact, deterministic row-wise top-:math:`k` selection and the chunked
cosine neighbour search built on it.

Both the cosine k-NN graph and the Jaccard graph select, per item, the
:math:`k` largest scores with ties broken by the LOWER column index.  A
plain :func:`torch.topk` is deterministic on one device but its choice among
equal scores is unspecified, so we select with it and repair only the rows
that have a tie straddling the :math:`k`-th position.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from mllmrec_pyg.transforms._distributed import (
    gather_rows,
    grid_blocks,
    group_shard,
    shard_bounds,
)
from mllmrec_pyg.utils.progress import progress_bar

#: Similarity blocks hold about this many scores (16 MiB in float32).
_CHUNK_ELEMENTS = 1 << 22


class UnitRows(NamedTuple):
    r"""The normalised input of a cosine neighbour search, returned by
    :func:`unit_rows`."""
    #: The rows of :obj:`x` divided by their :math:`L_2` norms: all rows
    #: (zero rows stay zero) or, compacted, the non-zero rows only.
    z: Tensor
    #: :obj:`[M]` indices into :obj:`x` of the non-zero rows, ascending.
    valid: Tensor
    #: The number of neighbours per row that exist, at most the one asked.
    k: int


def unit_rows(x: Tensor, k: int, include_self: bool, compact: bool = False,
              norm: Optional[Tensor] = None) -> UnitRows:
    r"""The preamble shared by every cosine top-:obj:`k` backend
    (:func:`cosine_topk`, :func:`~mllmrec_pyg.transforms._ivf.ivf_topk`,
    :func:`~mllmrec_pyg.transforms._faiss.faiss_topk`): normalises the rows,

    .. math::
        \mathbf{z}_i = \frac{\mathbf{x}_i}{\lVert \mathbf{x}_i \rVert_2}
        \quad \text{for } \mathbf{x}_i \neq \mathbf{0},

    drops the rows that are all zeros (they have no cosine similarity: they
    neither select nor are selected), and clips :obj:`k` to the candidates
    that exist, :math:`M` non-zero rows minus the row itself unless
    :obj:`include_self`.  A clipped :obj:`k <= 0` means no edge at all
    (:func:`no_neighbours`).

    Args:
        x (torch.Tensor): Features :obj:`[N, d]`.
        k (int): Neighbours asked per row.
        include_self (bool): Whether each row counts as its own candidate.
        compact (bool, optional): If :obj:`True`, :obj:`z` holds the
            :math:`M` non-zero rows only (in :obj:`valid` order), else all
            :math:`N` rows with the zero rows left zero.
            (default: :obj:`False`)
        norm (torch.Tensor, optional): The :obj:`[N]` row norms, if already
            computed; :obj:`None` computes :obj:`x.norm(p=2, dim=1)`.  (The
            faiss backend passes NumPy's, which round differently from
            torch's in the last bit, to keep its historical similarities.)
            (default: :obj:`None`)
    """
    if norm is None:
        norm = x.norm(p=2, dim=1)
    valid = norm > 0
    index = valid.nonzero().view(-1)
    if compact:
        z = x[index] / norm[index].unsqueeze(1)
    else:
        # Zero rows are divided by 1 (and stay zero) instead of by 0.
        z = x / norm.masked_fill(~valid, 1.0).unsqueeze(1)
    k = min(k, index.numel() - (0 if include_self else 1))
    return UnitRows(z, index, k)


def no_neighbours(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""The empty :obj:`(row, col, sim)` of a search without any edge, on
    the device of :obj:`x` and with its dtype for :obj:`sim`."""
    empty = x.new_empty(0, dtype=torch.long)
    return empty, empty.clone(), x.new_empty(0)


def ranked_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    r"""Returns :obj:`(values, index)` of the :obj:`k` largest entries of every
    row of :obj:`scores` (:obj:`[R, N]`, :obj:`k <= N`), ordered by value
    descending and, among equal values, by column index ascending.

    Excluded entries must be :obj:`-inf`; rows with fewer than :obj:`k` finite
    entries return :obj:`-inf` values in the trailing positions, which the
    caller drops.
    """
    assert 0 < k <= scores.size(1)
    values, index = scores.topk(k, dim=1, sorted=True)
    kth = values[:, -1:]
    # A row needs repair only when more entries than k reach the k-th value
    # (a tie across the cut); -inf ties are dropped by the caller anyway.
    num_ge = (scores >= kth).sum(dim=1)
    bad = (num_ge > k) & torch.isfinite(kth.squeeze(1))
    if bool(bad.any()):
        rows = bad.nonzero().view(-1)
        fixed_values, fixed_index = torch.sort(scores[rows], dim=1,
                                               descending=True, stable=True)
        values[rows] = fixed_values[:, :k]
        index[rows] = fixed_index[:, :k]
    # Canonical order inside the selection: value desc, then index asc.
    index, perm = index.sort(dim=1)
    values = values.gather(1, perm)
    values, perm = values.sort(dim=1, descending=True, stable=True)
    index = index.gather(1, perm)
    return values, index


def self_and_valid(values: Tensor, index: Tensor, query: Tensor,
                   include_self: bool) -> tuple[Tensor, Tensor]:
    r"""Finishes a selection made with the query's own score set to
    :obj:`+inf` (:obj:`include_self`) or :obj:`-inf`: returns the values with
    the self-loop's similarity set to :obj:`1` and the mask of entries to
    keep (finite scores, plus the self-loop)."""
    if not include_self:
        return values, torch.isfinite(values)
    is_self = index == query.unsqueeze(1)
    values = torch.where(is_self, torch.ones_like(values), values)
    return values, torch.isfinite(values) | is_self


#: Query rows per block of the exact search unless the caller fixes
#: :obj:`chunk_size`: enough rows for an efficient matrix product, each
#: candidate row read once per block.
_QUERY_ROWS = 1024


def cosine_topk(
    x: Tensor,
    k: int,
    include_self: bool,
    chunk_size: Optional[int] = None,
    block_elements: int = _CHUNK_ELEMENTS,
    progress: bool = False,
    item_range: Optional[tuple[int, int]] = None,
    group: Optional[ProcessGroup] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Exact cosine top-:obj:`k` neighbours of every row of :obj:`x`
    (with :obj:`progress`, a bar over the query rows on a terminal).

    The :obj:`[N, N]` similarity is never formed: it is computed in blocks
    of :obj:`chunk_size` query rows by about :obj:`block_elements /
    chunk_size` candidate columns, and each block's top-:obj:`k` is merged
    into the running top-:obj:`k` of its queries, so memory is
    :math:`O(\text{block} + Nk)`.  Rows that are all zeros have no cosine
    similarity: they neither select nor are selected.  With
    :obj:`include_self`, each (non-zero) row's own index is forced into its
    selection with similarity :obj:`1`.

    Returns :obj:`(row, col, sim)` sorted by :obj:`row`, then by similarity
    descending, then :obj:`col` ascending.

    With :obj:`item_range` :obj:`(a, b)`, only the rows of the items
    :math:`a \le i < b` are returned (a shard of the sharded build), and
    they are bitwise the rows of the full search: the query blocks stay
    those of the full search (the grid of :obj:`chunk_size` non-zero rows
    from the first one), a block that the range cuts is computed whole and
    only its rows inside the range are kept, so every product has the shape
    and inputs of one the full search runs.

    With a process :obj:`group`, each rank searches the rows of its
    contiguous block of items (:func:`~mllmrec_pyg.distributed.shard_bounds`)
    and the blocks are gathered in rank order: every rank returns the full
    result, equal to the one-process search.
    """
    if group is not None:
        rank, world = group_shard(group)
        part = cosine_topk(x, k, include_self, chunk_size, block_elements,
                           progress and rank == 0,
                           shard_bounds(x.size(0), rank, world))
        row, col, sim = gather_rows(part, group)
        return row, col, sim
    num_nodes = x.size(0)
    z, query_index, k = unit_rows(x, k, include_self)
    if k <= 0:
        return no_neighbours(x)

    num_queries = query_index.numel()
    # Zero rows score -inf as candidates: their product with anything is 0,
    # which would otherwise compete with genuinely orthogonal items.
    penalty = torch.full((num_nodes, ), float('-inf'), dtype=x.dtype,
                         device=x.device)
    penalty[query_index] = 0.0
    rows = min(num_queries, chunk_size or _QUERY_ROWS)
    cols = min(num_nodes, max(k + 1, block_elements // rows))
    self_score = float('inf') if include_self else float('-inf')

    # The non-zero rows this call returns: positions lo..hi of query_index.
    lo, hi = 0, num_queries
    if item_range is not None:
        bounds = torch.tensor(item_range, dtype=torch.long, device=x.device)
        lo, hi = torch.searchsorted(query_index, bounds).tolist()

    # Results go into preallocated [Q, k] tensors and every block reuses one
    # score buffer: allocating them per block interleaves small long-lived
    # tensors with large short-lived ones, which fragments the CPU heap
    # (measured: +10 MiB per block, 15 GiB at 100k items).
    out_col = torch.empty(hi - lo, k, dtype=torch.long, device=x.device)
    out_sim = torch.empty(hi - lo, k, dtype=x.dtype, device=x.device)
    out_keep = torch.empty(hi - lo, k, dtype=torch.bool, device=x.device)
    buffer = torch.empty(rows * cols, dtype=x.dtype, device=x.device)
    bar = progress_bar(hi - lo, 'k-NN search', progress, unit='item')
    for start, stop in grid_blocks(lo, hi, rows, num_queries):
        q = query_index[start:stop]
        zq = z[q]
        best_sim = x.new_full((q.numel(), k), float('-inf'))
        best_col = torch.zeros(q.numel(), k, dtype=torch.long, device=x.device)
        for first in range(0, num_nodes, cols):
            width = min(cols, num_nodes - first)
            scores = torch.mm(zq, z[first:first + width].t(),
                              out=buffer[:q.numel() * width].view(
                                  q.numel(), width))
            scores += penalty[first:first + width]
            inside = (q >= first) & (q < first + width)
            if bool(inside.any()):
                scores[inside.nonzero().view(-1), q[inside] - first] = \
                    self_score
            values, index = ranked_topk(scores, min(k, width))
            # Earlier blocks hold lower indices and come first, so the
            # merge keeps ties going to the lower index.
            values, pos = ranked_topk(torch.cat([best_sim, values], dim=1), k)
            best_col = torch.cat([best_col, index + first], dim=1).gather(1, pos)
            best_sim = values
        best_sim, keep = self_and_valid(best_sim, best_col, q, include_self)
        # The rows of this block inside lo..hi.
        a, b = max(start, lo), min(stop, hi)
        out_col[a - lo:b - lo] = best_col[a - start:b - start]
        out_sim[a - lo:b - lo] = best_sim[a - start:b - start]
        out_keep[a - lo:b - lo] = keep[a - start:b - start]
        bar.update(b - a)
    bar.close()
    del buffer

    row = query_index[lo:hi].unsqueeze(1).expand(-1, k)[out_keep]
    return row, out_col[out_keep], out_sim[out_keep]
