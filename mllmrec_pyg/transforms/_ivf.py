r"""Approximate cosine top-:math:`k` for very large catalogues, in plain
PyTorch (so the same code runs on CPU and CUDA): an inverted-file search
whose every step is a dense matrix product.

The items are clustered on the unit sphere (spherical k-means on a sample).
For every cluster :math:`c`, its members are the queries and the members of
the :obj:`nprobe` clusters whose centroids are closest to :math:`c`'s are the
candidates; one :obj:`[|c|, |candidates|]` product scores them all at once.
That is the classic IVF search (each query probes the lists near it) with the
probe lists chosen per cluster instead of per query, which turns
:math:`N` small scans into :obj:`nlist` well-shaped GEMMs: for :math:`N`
items the work is about :math:`N^2 d \cdot \text{nprobe} / \text{nlist}`
multiply-adds, and memory stays :math:`O(Nk + \text{nlist}^2 + \text{block})`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from mllmrec_pyg.transforms._distributed import (
    broadcast_,
    gather_rows,
    grid_blocks,
    group_shard,
    shard_bounds,
)
from mllmrec_pyg.transforms._topk import (
    no_neighbours,
    ranked_topk,
    self_and_valid,
    unit_rows,
)
from mllmrec_pyg.utils.progress import progress_bar

#: Scores per block of the nearest-centroid assignment (64 MiB in float32).
_ASSIGN_ELEMENTS = 1 << 24


def default_ivf_nlist(num_items: int) -> int:
    r"""Clusters for :obj:`num_items` vectors: :math:`4\sqrt{N}` (about
    :math:`\sqrt{N}/4` members each), at least one."""
    return max(1, min(num_items, round(4 * math.sqrt(num_items))))


def default_ivf_nprobe(nlist: int) -> int:
    r"""Clusters probed per cluster: :math:`\text{nlist}/64`, at least 32
    (about 1.6% of the catalogue scored per query at
    :math:`\text{nlist} = 4\sqrt{N}`)."""
    return min(nlist, max(32, nlist // 64))


def _nearest(z: Tensor, centroids: Tensor, group: Optional[ProcessGroup] = None,
             ) -> Tensor:
    step = max(1, _ASSIGN_ELEMENTS // max(1, centroids.size(0)))
    if group is None:
        return torch.cat([(block @ centroids.t()).argmax(dim=1)
                          for block in z.split(step)])
    # Each rank assigns its block of rows with the blocks of the one-process
    # assignment (cut blocks computed whole), then the assignments are
    # gathered: integers, so every rank holds the same exact result.
    rank, world = group_shard(group)
    lo, hi = shard_bounds(z.size(0), rank, world)
    parts = []
    for first, stop in grid_blocks(lo, hi, step, z.size(0)):
        best = (z[first:stop] @ centroids.t()).argmax(dim=1)
        parts.append(best[max(first, lo) - first:min(stop, hi) - first])
    local = torch.cat(parts) if parts else \
        torch.empty(0, dtype=torch.long, device=z.device)
    return gather_rows([local], group)[0]


def spherical_kmeans(
    z: Tensor,
    num_clusters: int,
    iterations: int = 10,
    sample_size: Optional[int] = None,
    seed: int = 0,
    group: Optional[ProcessGroup] = None,
) -> Tensor:
    r"""Unit-norm centroids of :obj:`num_clusters` clusters of the unit rows
    :obj:`z` (cosine k-means), fitted on a seeded sample of
    :obj:`sample_size` rows (default: 64 per cluster).  Empty clusters are
    re-seeded with sample points.

    With a process :obj:`group` (every rank holding the same :obj:`z`), the
    sample and the initialisation come from the same seeded CPU generator
    on every rank, each iteration's nearest-centroid assignment (the
    :math:`O(\text{sample} \cdot \text{nlist} \cdot d)` part) is split
    between the ranks and gathered, and the centroid update (cheap) runs on
    every rank and is then broadcast from the group's first rank, so the
    centroids are bitwise the same everywhere even where the update is not
    deterministic (:obj:`index_add_` on CUDA)."""
    n = z.size(0)
    gen = torch.Generator().manual_seed(seed)
    sample_size = min(n, sample_size or 64 * num_clusters)
    pick = torch.randperm(n, generator=gen)[:sample_size].to(z.device)
    points = z[pick]
    init = torch.randperm(sample_size, generator=gen)[:num_clusters]
    centroids = points[init.to(z.device)].clone()
    for _ in range(iterations):
        assign = _nearest(points, centroids, group)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=num_clusters)
        empty = (counts == 0).nonzero().view(-1)
        if empty.numel() > 0:
            reseed = torch.randint(sample_size, (empty.numel(), ),
                                   generator=gen).to(z.device)
            sums[empty] = points[reseed]
        centroids = sums / sums.norm(dim=1, keepdim=True).clamp_min(
            torch.finfo(z.dtype).tiny)
        if group is not None:
            broadcast_(centroids, group)
    return centroids


def _inverted_lists(z: Tensor, nlist: int, nprobe: int, iterations: int,
                    seed: int, group: Optional[ProcessGroup] = None,
                    ) -> tuple[Tensor, Tensor, Tensor]:
    r"""Clusters the unit rows :obj:`z` and returns :obj:`(perm, counts,
    probes)`: the rows grouped by cluster (members of cluster :math:`c` are
    :obj:`perm[ptr[c]:ptr[c + 1]]` with :obj:`ptr` the cumulated
    :obj:`counts`) and, per cluster, the :obj:`nprobe` clusters of closest
    centroids (its own included).  With a process :obj:`group`, the
    clustering and the assignment are shared out (see
    :func:`spherical_kmeans`) and the probes broadcast from the group's
    first rank: every rank holds the same lists."""
    centroids = spherical_kmeans(z, nlist, iterations, seed=seed, group=group)
    assign = _nearest(z, centroids, group)
    assign, perm = torch.sort(assign, stable=True)
    counts = torch.bincount(assign, minlength=nlist)
    probes = (centroids @ centroids.t()).topk(nprobe, dim=1).indices
    if group is not None:
        broadcast_(probes, group)
    return perm, counts, probes


def _cluster_range(counts: Tensor, probes: Tensor, rank: int,
                   world: int) -> tuple[int, int]:
    r"""The clusters :obj:`[c0, c1)` whose queries rank :obj:`rank` of
    :obj:`world` searches: contiguous ranges of equal estimated work, the
    work of cluster :math:`c` being :math:`|c| \cdot (|c| + \sum_{p \in
    \text{probes}(c)} |p|)` (a cluster goes to the rank whose share holds
    the middle of its work; integer arithmetic, so every rank agrees)."""
    sizes = counts.cpu()
    cost = sizes * (sizes + sizes[probes.cpu()].sum(dim=1))
    before = cost.cumsum(0) - cost
    total = max(1, int(cost.sum()))
    owner = (world * (2 * before + cost)) // (2 * total)
    return int((owner < rank).sum()), int((owner <= rank).sum())


def _search_lists(z: Tensor, k: int, include_self: bool, perm: Tensor,
                  counts: Tensor, probes: Tensor, progress: bool = False,
                  clusters: Optional[tuple[int, int]] = None,
                  ) -> tuple[Tensor, Tensor, Tensor]:
    r"""Scores every cluster's members against the members of its probed
    clusters in one matrix product; returns the :obj:`[n, k]` neighbours,
    similarities and kept-entry mask of the rows in cluster order
    (:obj:`perm`).  With :obj:`clusters` :obj:`(c0, c1)`, only those
    clusters are searched and the rows are those of their members,
    :obj:`perm[ptr[c0]:ptr[c1]]`."""
    device = z.device
    n, nlist = z.size(0), counts.numel()
    ptr = torch.zeros(nlist + 1, dtype=torch.long, device=device)
    ptr[1:] = counts.cumsum(0)
    ptr_cpu, probes_cpu = ptr.cpu(), probes.cpu()
    c0, c1 = (0, nlist) if clusters is None else clusters
    offset, n = int(ptr_cpu[c0]), int(ptr_cpu[c1] - ptr_cpu[c0])

    # Preallocated results and one reused score buffer (as in the exact
    # search: per-cluster allocations would fragment the CPU heap).
    out_col = torch.empty(n, k, dtype=torch.long, device=device)
    out_sim = torch.empty(n, k, dtype=z.dtype, device=device)
    out_keep = torch.zeros(n, k, dtype=torch.bool, device=device)
    sizes = counts.cpu()
    largest = int((sizes[probes_cpu].sum(dim=1) + sizes).max())
    # A cluster's queries are scored in sub-blocks of about _ASSIGN_ELEMENTS
    # scores, so one oversized cluster cannot blow the buffer up.
    buffer = torch.empty(min(int(sizes.max()) * largest,
                             max(_ASSIGN_ELEMENTS, largest)),
                         dtype=z.dtype, device=device)
    self_score = float('inf') if include_self else float('-inf')
    bar = progress_bar(n, 'k-NN search (ivf)', progress, unit='item')
    for c in range(c0, c1):
        start, end = int(ptr_cpu[c]), int(ptr_cpu[c + 1])
        bar.update(end - start)
        if start == end:
            continue
        members = perm[start:end]
        cand = torch.cat([perm[int(ptr_cpu[p]):int(ptr_cpu[p + 1])]
                          for p in probes_cpu[c].tolist()] + [members])
        # Sorted, de-duplicated candidates: ties go to the lower index.
        cand = torch.unique(cand)
        take = min(k, cand.numel() - (0 if include_self else 1))
        if take <= 0:
            continue
        cand_z = z[cand]
        step = max(1, _ASSIGN_ELEMENTS // cand.numel())
        for first in range(0, end - start, step):
            query = members[first:first + step]
            scores = torch.mm(z[query], cand_z.t(),
                              out=buffer[:query.numel() * cand.numel()].view(
                                  query.numel(), cand.numel()))
            # Every query is among its own candidates.
            local = torch.arange(query.numel(), device=device)
            scores[local, torch.searchsorted(cand, query)] = self_score
            values, index = ranked_topk(scores, take)
            index = cand[index]
            values, keep = self_and_valid(values, index, query, include_self)
            # Rows of cluster c are positions start..end of the sorted order.
            rows = slice(start - offset + first,
                         start - offset + first + query.numel())
            out_col[rows, :take] = index
            out_sim[rows, :take] = values
            out_keep[rows, :take] = keep
    bar.close()
    return out_col, out_sim, out_keep


def ivf_topk(
    x: Tensor,
    k: int,
    include_self: bool,
    nlist: Optional[int] = None,
    nprobe: Optional[int] = None,
    iterations: int = 10,
    seed: int = 0,
    progress: bool = False,
    group: Optional[ProcessGroup] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Approximate cosine top-:obj:`k` of every row of :obj:`x`, same
    contract as :func:`~mllmrec_pyg.transforms._topk.cosine_topk` (zero rows
    isolated, self forced first with :obj:`include_self`, sorted by row,
    similarity descending, column ascending; similarities are exact cosines,
    only the candidate set is approximate).

    Args:
        x (torch.Tensor): Features :obj:`[N, d]`.
        k (int): Neighbours per row.
        include_self (bool): Force each row's own index into its selection.
        nlist (int, optional): Clusters; :obj:`None` means :math:`4\sqrt{N}`.
        nprobe (int, optional): Clusters whose members are the candidates of
            a cluster's queries (its own included); :obj:`None` means
            :obj:`max(32, nlist // 64)`.
        iterations (int): k-means iterations.
        seed (int): Seed of the k-means sample and initialisation.
        progress (bool): A bar over the items on a terminal.
        group (torch.distributed.ProcessGroup, optional): Shares the build
            out between the ranks of the group (every rank holding the same
            :obj:`x`), each returning the full result, equal to the
            one-process one: the clustering is split as in
            :func:`spherical_kmeans`; the searches are split by CLUSTERS
            (contiguous ranges of equal estimated work,
            :func:`_cluster_range`), since a cluster's queries are scored
            together and splitting them by item range would change the
            shape of their products (or make every rank score nearly every
            cluster); the rows are then gathered and put back in item
            order.
    """
    device = x.device
    z, valid, k = unit_rows(x, k, include_self, compact=True)
    n = z.size(0)
    if k <= 0:
        return no_neighbours(x)

    nlist = min(n, nlist or default_ivf_nlist(n))
    nprobe = min(nlist, nprobe or default_ivf_nprobe(nlist))
    perm, counts, probes = _inverted_lists(z, nlist, nprobe, iterations, seed,
                                           group)
    if group is not None:
        rank, world = group_shard(group)
        c0, c1 = _cluster_range(counts, probes, rank, world)
        out_col, out_sim, out_keep = _search_lists(
            z, k, include_self, perm, counts, probes, progress and rank == 0,
            (c0, c1))
        ptr = counts.cumsum(0).tolist()
        lo, hi = (ptr[c0 - 1] if c0 else 0), (ptr[c1 - 1] if c1 else 0)
        row = perm[lo:hi].unsqueeze(1).expand(-1, k)[out_keep]
        row, col, sim = gather_rows([row, out_col[out_keep], out_sim[out_keep]],
                                    group)
        # Each row's entries are contiguous and ordered: a stable sort by
        # row gives the one-process order.
        order = torch.sort(row, stable=True).indices
        return valid[row[order]], valid[col[order]], sim[order]

    out_col, out_sim, out_keep = _search_lists(z, k, include_self, perm, counts,
                                               probes, progress)

    # Back from cluster order to item order; each row is already ordered
    # (similarity descending, column ascending).
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n, device=device)
    out_col, out_sim, out_keep = out_col[inverse], out_sim[inverse], \
        out_keep[inverse]
    row = torch.arange(n, device=device).unsqueeze(1).expand(-1, k)[out_keep]
    return valid[row], valid[out_col[out_keep]], out_sim[out_keep]
