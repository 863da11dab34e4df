from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.distributed import ProcessGroup
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from mllmrec_pyg.transforms._distributed import check_group
from mllmrec_pyg.transforms._faiss import faiss_topk
from mllmrec_pyg.transforms._ivf import ivf_topk
from mllmrec_pyg.transforms._topk import cosine_topk
from mllmrec_pyg.transforms.candidates import CandidateCache

_BACKENDS = ('torch', 'ivf', 'faiss', 'faiss-ivf')
#: The backends that can share a search out between the ranks of a group.
_SHARDED_BACKENDS = ('torch', 'ivf')


@functional_transform('threshold_knn')
class ThresholdKNN(BaseTransform):
    r"""Builds the denoised item-item k-NN graph of MLLMRec (Eq. 6-7 of
    `"MLLMRec: Exploring the Potential of Multimodal Large Language Models in
    Recommender Systems" <https://arxiv.org/abs/2508.15304>`_)
    (functional name: :obj:`threshold_knn`).

    With :math:`\mathbf{e}_i` the features of item :math:`i`, the cosine
    similarity is kept only for the top-:math:`k` neighbours of each item,
    and only where it reaches :math:`\alpha`; kept entries are binary:

    .. math::
        S_{ij} = \frac{\mathbf{e}_i^{\top}\mathbf{e}_j}
        {\|\mathbf{e}_i\|\,\|\mathbf{e}_j\|}, \qquad
        \tilde{S}_{ij} = \begin{cases} 1 & \text{if } j \in
        \operatorname{top-}\!k(S_{i,:}) \text{ and } S_{ij} \ge \alpha \\
        0 & \text{otherwise} \end{cases}

    On :class:`~torch_geometric.data.HeteroData` it reads
    :obj:`data[node_type][key]` and writes
    :obj:`data[node_type, relation, node_type].edge_index` (row 0: the item
    :math:`i` whose neighbours were selected, row 1: neighbour :math:`j`,
    i.e. the coordinates of :math:`\tilde{S}_{ij}`) and :obj:`.edge_weight`
    (all :obj:`weight`, by default ones, in the feature dtype), sorted by row, then similarity
    descending, then column.  On :class:`~torch_geometric.data.Data` it reads
    :obj:`data[key]` and writes :obj:`data.edge_index` /
    :obj:`data.edge_weight` with the same convention.

    Defined behaviour at the edges:

    * Ties in similarity are broken by the lower item index (with the
      faiss backends, a tie straddling the :math:`k`-th place is decided by
      faiss, and similarities may differ from torch's in the last bit).
    * Items whose feature vector is all zeros have no cosine similarity: they
      select no neighbour and are never selected (no self-loop either).
    * If :obj:`k` is at least the number of other items, every other item is
      a candidate (no error).
    * :obj:`alpha=None` keeps the top-:math:`k` whatever their similarity
      (the "w/o denoising" ablation).  Unlike the reference code, whose
      in-place :obj:`adj[adj >= alpha] = 1` turns every non-neighbour into an
      edge when :math:`\alpha \le 0`, negative thresholds are exact here.

    .. note::
        The reference implementation takes the top-:math:`k` of the full
        similarity row, which contains the item itself (similarity 1), so it
        keeps :math:`K_s - 1` real neighbours plus a self-loop.
        :obj:`include_self=True` reproduces that: the item itself is always
        the first of its :math:`k` selections (weight 1).  The default
        :obj:`include_self=False` gives :math:`K_s` real neighbours.

    Args:
        k (int, optional): The number :math:`K_s` of neighbours per item.
            (default: :obj:`10`)
        alpha (float, optional): The similarity threshold :math:`\alpha`
            in :math:`[-1, 1]`; :obj:`None` disables it. The paper uses
            0.7 (Baby), 0.4 (Sports) and 0.6 (Clothing).
            (default: :obj:`0.4`)
        include_self (bool, optional): If :obj:`True`, each item occupies
            one of its own :math:`k` slots with a self-loop (the reference
            behaviour, see the note). (default: :obj:`False`)
        key (str, optional): The feature attribute to read.
            (default: :obj:`"x"`)
        node_type (str, optional): The node type of the items in a
            :class:`~torch_geometric.data.HeteroData`.
            (default: :obj:`"item"`)
        relation (str, optional): The relation written on a
            :class:`~torch_geometric.data.HeteroData`,
            :obj:`data[node_type, relation, node_type]`.
            (default: :obj:`"knn"`)
        weight (float, optional): The value of every kept entry of
            :math:`\tilde{\mathbf{S}}` (the paper's binary :obj:`1`;
            :class:`RefineItemGraph` gives the graph of modality :math:`m`
            its mixing weight :math:`w_m`). (default: :obj:`1.0`)
        chunk_size (int, optional): Query rows per similarity block of the
            exact search; each block spans about 16 MiB of scores and its
            top-:math:`k` is merged into the running one (memory
            :math:`O(\text{block} + Nk)`). :obj:`None` means 1024 rows.
            (default: :obj:`None`)
        backend (str, optional): :obj:`"torch"` (exact, chunked, on the
            features' device), :obj:`"ivf"` (approximate, for catalogues of
            millions of items: spherical k-means clusters, each cluster's
            members scored against the members of its :obj:`nprobe` nearest
            clusters in one matrix product; plain PyTorch on the features'
            device; similarities are exact, only the candidate sets are
            approximate), :obj:`"faiss"` (exact inner product, CPU) or
            :obj:`"faiss-ivf"` (faiss' :obj:`IndexIVFFlat`, CPU). The faiss
            backends need the :obj:`faiss` extra. Measure the recall of an
            approximate backend against the exact one on a sample with
            :func:`mllmrec_pyg.transforms.knn_recall`.
            (default: :obj:`"torch"`)
        nlist (int, optional): Clusters (inverted lists) of :obj:`"ivf"` /
            :obj:`"faiss-ivf"`; :obj:`None` means :math:`4\sqrt{N}` for
            :obj:`"ivf"` and :math:`2\sqrt{N}` for :obj:`"faiss-ivf"`.
            (default: :obj:`None`)
        nprobe (int, optional): Clusters probed: per cluster of queries for
            :obj:`"ivf"` (:obj:`None` means :obj:`max(32, nlist // 64)`),
            per query for :obj:`"faiss-ivf"` (:obj:`None` means
            :obj:`max(8, nlist // 100)`). (default: :obj:`None`)
        candidates (CandidateCache, optional): Remembers the top-:math:`k`
            search by the content of the features, so transforms that differ
            only in :obj:`alpha` (a sweep) search once.
            (default: :obj:`None`, search on every call)
        progress (bool, optional): A progress bar over the items during the
            search (torch and ivf backends), shown on a terminal only.
            (default: :obj:`False`)
        group (torch.distributed.ProcessGroup, optional): Shares the search
            out between the ranks of a process group (gloo on CPU, NCCL on
            GPU; the default group is
            :obj:`torch.distributed.group.WORLD`, after
            :func:`torch.distributed.init_process_group`): every rank must
            call the transform on the same features, searches the rows of
            its contiguous block of items (torch backend) or the queries of
            its range of clusters (ivf backend, same clustering on every
            rank) against all items, and ends with the full graph, equal
            edge for edge (order and ties included) to the one-process
            build.  Memory per rank is :math:`O(Nk/\text{ranks})` for the
            search plus the replicated features and the gathered
            :math:`O(Nk)` graph.  Torch and ivf backends only.
            (default: :obj:`None`, one process)
    """
    def __init__(
        self,
        k: int = 10,
        alpha: Optional[float] = 0.4,
        include_self: bool = False,
        key: str = 'x',
        node_type: str = 'item',
        relation: str = 'knn',
        weight: float = 1.0,
        chunk_size: Optional[int] = None,
        backend: str = 'torch',
        nlist: Optional[int] = None,
        nprobe: Optional[int] = None,
        candidates: Optional[CandidateCache] = None,
        progress: bool = False,
        group: Optional[ProcessGroup] = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"ThresholdKNN: 'k' must be a positive integer "
                             f"(got {k!r})")
        if alpha is not None and not (
                isinstance(alpha, (int, float)) and -1.0 <= alpha <= 1.0):
            raise ValueError(f"ThresholdKNN: 'alpha' must lie in [-1, 1] "
                             f"(cosine similarity) or be None to disable "
                             f"the threshold (got {alpha!r})")
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(f"ThresholdKNN: 'chunk_size' must be positive "
                             f"or None (got {chunk_size!r})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not weight > 0:
            raise ValueError(f"ThresholdKNN: 'weight' must be a positive "
                             f"number (got {weight!r})")
        if backend not in _BACKENDS:
            raise ValueError(f"ThresholdKNN: unknown backend {backend!r} "
                             f"(expected one of {', '.join(_BACKENDS)})")
        if group is not None and backend not in _SHARDED_BACKENDS:
            raise ValueError(f"ThresholdKNN: backend {backend!r} cannot be "
                             f"sharded over a process group; use "
                             f"backend='torch' (exact) or 'ivf', or "
                             f"group=None")
        check_group(group, 'ThresholdKNN')
        self.k = k
        self.alpha = None if alpha is None else float(alpha)
        self.include_self = include_self
        self.key = key
        self.node_type = node_type
        self.relation = relation
        self.weight = float(weight)
        self.chunk_size = chunk_size
        self.backend = backend
        self.nlist = nlist
        self.nprobe = nprobe
        self.candidates = candidates
        self.progress = progress
        self.group = group

    def _features(self, data: Union[Data, HeteroData]) -> Tensor:
        if isinstance(data, HeteroData):
            where = f"data['{self.node_type}'].{self.key}"
            if self.node_type not in data.node_types:
                raise ValueError(f"ThresholdKNN: the graph has no node type "
                                 f"'{self.node_type}' (node types: "
                                 f"{data.node_types})")
            x = getattr(data[self.node_type], self.key, None)
        else:
            where = f"data.{self.key}"
            x = getattr(data, self.key, None)
        if x is None:
            raise ValueError(f"ThresholdKNN: {where} is missing; encode the "
                             f"items first (e.g. MiniLM embeddings) or pass "
                             f"the attribute holding the features as 'key'")
        if not isinstance(x, Tensor) or x.dim() != 2 \
                or not x.is_floating_point():
            raise ValueError(f"ThresholdKNN: {where} must be a floating-point "
                             f"[num_items, num_features] tensor")
        # Checked in blocks: a full isfinite mask is as large as x.
        bad = torch.cat([~torch.isfinite(block).all(dim=1)
                         for block in x.split(1 << 16)]) if x.size(0) else \
            torch.zeros(0, dtype=torch.bool, device=x.device)
        if bool(bad.any()):
            rows = bad.nonzero().view(-1)
            raise ValueError(f"ThresholdKNN: {where} has NaN or infinite "
                             f"values in {rows.numel()} rows (first: item "
                             f"{int(rows[0])}); fix or drop those features")
        return x

    def _search(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The top-:obj:`k` list :obj:`(row, col, sim)` of :obj:`x`,
        before the threshold."""
        if self.backend == 'torch':
            return cosine_topk(x, self.k, self.include_self, self.chunk_size,
                               progress=self.progress, group=self.group)
        if self.backend == 'ivf':
            return ivf_topk(x, self.k, self.include_self, self.nlist,
                            self.nprobe, progress=self.progress,
                            group=self.group)
        return faiss_topk(x, self.k, self.include_self,
                          self.backend == 'faiss-ivf', self.nlist,
                          self.nprobe)

    def forward(
        self,
        data: Union[Data, HeteroData],
    ) -> Union[Data, HeteroData]:
        x = self._features(data)
        if self.candidates is None:
            row, col, sim = self._search(x)
        else:
            row, col, sim = self.candidates.knn(
                x, (self.k, self.include_self, self.backend, self.nlist,
                    self.nprobe), lambda: self._search(x))
        if self.alpha is not None:
            # The self-loop's similarity is 1 by definition, always >= alpha.
            keep = sim >= self.alpha
            row, col = row[keep], col[keep]
        edge_index = torch.stack([row, col], dim=0)
        edge_weight = torch.full((row.numel(), ), self.weight, dtype=x.dtype,
                                 device=x.device)

        if isinstance(data, HeteroData):
            store = data[self.node_type, self.relation, self.node_type]
        else:
            store = data
        store.edge_index = edge_index
        store.edge_weight = edge_weight
        return data

    def __repr__(self) -> str:
        args = [f'k={self.k}', f'alpha={self.alpha}']
        if self.key != 'x':
            args.append(f"key='{self.key}'")
        if self.weight != 1.0:
            args.append(f'weight={self.weight}')
        if self.include_self:
            args.append('include_self=True')
        if self.backend != 'torch':
            args.append(f"backend='{self.backend}'")
        return f'{self.__class__.__name__}({", ".join(args)})'


def similarity_quantiles(
    x: Tensor,
    k: int = 10,
    quantiles: Sequence[float] = (0.25, 0.5, 0.75),
    include_self: bool = False,
    chunk_size: Optional[int] = None,
) -> List[float]:
    r"""Returns the thresholds :math:`\alpha` of :class:`ThresholdKNN` at
    which the given shares of the top-:math:`k` cosine edges of :obj:`x` are
    dropped: for a quantile :math:`q`, the :math:`q`-quantile of the
    similarities of all top-:math:`k` edges, so that
    :obj:`ThresholdKNN(k, alpha)` keeps about :math:`(1 - q)` of them
    (exactly, up to ties).

    The paper's :math:`\alpha` values (0.4 to 0.7) were chosen for one
    encoder; the similarity distributions of other features (CNN image
    features, audio features, other text encoders) differ, so a grid of
    thresholds is better placed at quantiles of the features' own top-k
    similarities and then selected on validation.

    .. code-block:: python

        from mllmrec_pyg.transforms import similarity_quantiles

        alphas = similarity_quantiles(data['item'].image_feat, k=10)

    Args:
        x (torch.Tensor): The :obj:`[N, F]` item features.
        k (int, optional): Neighbours per item, :math:`K_s`.
            (default: :obj:`10`)
        quantiles (Sequence[float], optional): Shares :math:`q \in [0, 1]`
            of the edges to drop. (default: :obj:`(0.25, 0.5, 0.75)`)
        include_self (bool, optional): Count the self-loops as
            :class:`ThresholdKNN` does (they are never dropped, so they
            are left out of the quantiles). (default: :obj:`False`)
        chunk_size (int, optional): Query rows per similarity block.
            (default: :obj:`None`)
    """
    for q in quantiles:
        if not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"similarity_quantiles: each quantile must lie "
                             f"in [0, 1] (got {q!r})")
    row, col, sim = cosine_topk(x, k, include_self, chunk_size)
    sim = sim[row != col].double().sort().values
    if sim.numel() == 0:
        raise ValueError('similarity_quantiles: the features give no k-NN '
                         'edge (all rows are zero or there is one item)')
    out = []
    for q in quantiles:
        # The q-quantile of the sorted similarities, as the lower order
        # statistic: sim >= it keeps exactly the edges from that rank on.
        index = min(int(math.floor(float(q) * sim.numel())), sim.numel() - 1)
        out.append(float(sim[index]))
    return out
