r"""The recall of an approximate item k-NN graph against the exact one, to
choose the :obj:`"ivf"` / :obj:`"faiss-ivf"` backends of
:class:`~mllmrec_pyg.transforms.ThresholdKNN` and their :obj:`nlist` /
:obj:`nprobe` on a sample of the catalogue."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from mllmrec_pyg.transforms._topk import ranked_topk


def knn_recall(
    x: Tensor,
    approx_col: Tensor,
    approx_row: Tensor,
    k: int,
    sample: Tensor,
    alpha: Optional[float] = None,
) -> float:
    r"""Returns the Recall@:obj:`k` of an approximate neighbour list against
    the exact cosine top-:obj:`k` (self excluded), over the query items
    :obj:`sample` :math:`\mathcal{Q}`:

    .. math::
        \mathrm{Recall}@k = \frac{\sum_{i \in \mathcal{Q}}
        |\hat{\mathcal{N}}_k(i) \cap \mathcal{N}_k(i)|}
        {\sum_{i \in \mathcal{Q}} |\mathcal{N}_k(i)|}

    with :math:`\hat{\mathcal{N}}_k(i)` the approximate and
    :math:`\mathcal{N}_k(i)` the exact neighbours of :math:`i`.  The exact
    lists are computed for the sample only, against all items (items whose
    features are all zeros are never neighbours).  With :obj:`alpha`, the
    exact lists keep only similarities :math:`\ge \alpha` (as
    :class:`~mllmrec_pyg.transforms.ThresholdKNN` does), so the recall is
    that of the thresholded graph; nothing to find counts as full recall.

    .. code-block:: python

        from mllmrec_pyg.transforms import ThresholdKNN, knn_recall

        data = ThresholdKNN(k=10, alpha=None, backend='ivf')(data)
        row, col = data['item', 'knn', 'item'].edge_index
        sample = torch.randperm(data['item'].num_nodes)[:1000]
        knn_recall(data['item'].x, col, row, 10, sample)

    Args:
        x (torch.Tensor): Item features :obj:`[N, d]`.
        approx_col (torch.Tensor): :obj:`[E]` neighbours of the approximate
            edges.
        approx_row (torch.Tensor): :obj:`[E]` query items of the
            approximate edges (row 0 of the k-NN graph).
        k (int): Neighbours per item.
        sample (torch.Tensor): Indices of the query items to measure on.
        alpha (float, optional): Similarity threshold of the exact lists.
            (default: :obj:`None`)
    """
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
