from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

from torch.distributed import ProcessGroup
from torch_geometric.transforms import BaseTransform, Compose

from mllmrec_pyg.transforms.candidates import CandidateCache
from mllmrec_pyg.transforms.fuse_features import FuseFeatures, check_modality_weights
from mllmrec_pyg.transforms.jaccard_cooccurrence import JaccardCoOccurrence
from mllmrec_pyg.transforms.normalize_item_graph import NormalizeItemGraph
from mllmrec_pyg.transforms.threshold_knn import ThresholdKNN

_FUSIONS = ('mix', 'concat')
_FUSED = '_refine_fused_x'


class RefineItemGraph(Compose):
    r"""The refined item-item graph of MLLMRec (Eq. 6-11 of `"MLLMRec:
    Exploring the Potential of Multimodal Large Language Models in
    Recommender Systems" <https://arxiv.org/abs/2508.15304>`_): the
    :class:`~torch_geometric.transforms.Compose` of
    :class:`ThresholdKNN`, :class:`JaccardCoOccurrence` and
    :class:`NormalizeItemGraph`,

    .. math::
        \hat{\mathbf{S}} = \mathbf{D}^{-1/2} \left( \tilde{\mathbf{S}} +
        \tilde{\mathbf{C}} \right) \mathbf{D}^{-1/2}

    with :math:`\tilde{\mathbf{S}}` the top-:math:`K_s` cosine neighbours of
    :obj:`data['item'].x` with similarity :math:`\ge \alpha` (binary) and
    :math:`\tilde{\mathbf{C}}` the top-:math:`K_c` Jaccard neighbours over
    the TRAINING edges of :obj:`data['user', 'interacts', 'item']`.

    It writes :obj:`data['item', 'knn', 'item']`,
    :obj:`data['item', 'cooccurs', 'item']` and the normalised
    :obj:`data['item', 'similar', 'item']` (each with :obj:`edge_index` and
    :obj:`edge_weight`; row 0 is the item whose neighbours were selected,
    which receives the messages: see :class:`NormalizeItemGraph` for the
    direction and degree conventions).

    .. code-block:: python

        from mllmrec_pyg.transforms import RefineItemGraph

        data = RefineItemGraph(knn_k=10, alpha=0.4, jaccard_k=10)(data)
        adj = data['item', 'similar', 'item']

    Args:
        knn_k (int, optional): Cosine neighbours :math:`K_s` per item.
            (default: :obj:`10`)
        alpha (float or Sequence[float], optional): Similarity threshold
            :math:`\alpha`, or :obj:`None` for none (paper: Baby 0.7, Sports
            0.4, Clothing 0.6); with several keys and :obj:`fusion="mix"`,
            one per key (a single value applies to all). The right value
            depends on the encoder: see :func:`similarity_quantiles`.
            (default: :obj:`0.4`)
        jaccard_k (int, optional): Co-occurring items :math:`K_c` per item,
            :obj:`0` to disable (paper: 10, Clothing 15).
            (default: :obj:`10`)
        include_self (bool, optional): Reference behaviour of the k-NN
            graph (a self-loop takes one of the :math:`K_s` slots), see
            :class:`ThresholdKNN`. (default: :obj:`False`)
        degree (str, optional): Degree convention of the normalisation,
            :obj:`"row"` (reference) or :obj:`"col"`.
            (default: :obj:`"row"`)
        symmetrize (bool, optional): Normalise
            :math:`\mathbf{S}^{*} + \mathbf{S}^{*\top}`.
            (default: :obj:`False`)
        sparse_adjacency (bool, optional): Also store a CSR :obj:`adj_t`.
            (default: :obj:`False`)
        key (str or Sequence[str], optional): The item feature attribute, or
            several (one modality each, see above). (default: :obj:`"x"`)
        chunk_size (int, optional): Query rows per similarity block of the
            exact search, see :class:`ThresholdKNN`. (default: :obj:`None`)
        backend (str, optional): Neighbour search backend of
            :class:`ThresholdKNN`: :obj:`"torch"` (exact), :obj:`"ivf"`
            (approximate, for millions of items), :obj:`"faiss"` or
            :obj:`"faiss-ivf"`. (default: :obj:`"torch"`)
        nlist (int, optional): Clusters of the approximate backends, see
            :class:`ThresholdKNN`. (default: :obj:`None`)
        nprobe (int, optional): Clusters probed by the approximate
            backends, see :class:`ThresholdKNN`. (default: :obj:`None`)
        fusion (str, optional): With several keys, :obj:`"mix"` (refine
            each modality, then mix) or :obj:`"concat"` (refine the fused
            features). :obj:`"mix"` was the better one on TikTok's
            validation (image + audio) with FREEDOM in 7 of 9 alpha x K_c
            cells (``benchmarks/plug_and_play.py``). (default: :obj:`"mix"`)
        modality_weights (Sequence[float], optional): :math:`w_m`, one per
            key; :obj:`None` takes
            :func:`~mllmrec_pyg.transforms.fuse_features.modality_weights_default`
            (FREEDOM's: :obj:`image_feat` 0.1, the rest share 0.9; equal
            weights without an image). (default: :obj:`None`)
        candidates (CandidateCache, optional): Shares the k-NN searches and
            the Jaccard lists between transforms that differ only in
            :obj:`alpha`, :obj:`jaccard_k` or :obj:`modality_weights` (a
            sweep), see :class:`CandidateCache`. (default: :obj:`None`)
        progress (bool, optional): Progress bars for the k-NN and Jaccard
            searches, shown on a terminal only. (default: :obj:`False`)
        group (torch.distributed.ProcessGroup, optional): Shares the k-NN
            searches and the Jaccard lists out between the ranks of a
            process group (e.g. :obj:`torch.distributed.group.WORLD`; torch
            and ivf backends), see :class:`ThresholdKNN` and
            :class:`JaccardCoOccurrence`; every rank calls the transform on
            the same data, the edges are gathered and every rank normalises
            the full graph, equal to the one-process build exactly.
            (default: :obj:`None`, one process)
    """
    def __init__(
        self,
        knn_k: int = 10,
        alpha: Union[None, float, Sequence[Optional[float]]] = 0.4,
        jaccard_k: int = 10,
        include_self: bool = False,
        degree: str = 'row',
        symmetrize: bool = False,
        sparse_adjacency: bool = False,
        key: Union[str, Sequence[str]] = 'x',
        chunk_size: Optional[int] = None,
        backend: str = 'torch',
        nlist: Optional[int] = None,
        nprobe: Optional[int] = None,
        fusion: str = 'mix',
        modality_weights: Optional[Sequence[float]] = None,
        candidates: Optional[CandidateCache] = None,
        progress: bool = False,
        group: Optional[ProcessGroup] = None,
    ) -> None:
        keys = [key] if isinstance(key, str) else list(key)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"RefineItemGraph: 'key' must be a feature "
                             f"attribute or a non-empty list of them (got {key!r})")
        if fusion not in _FUSIONS:
            raise ValueError(f"RefineItemGraph: 'fusion' must be 'mix' or "
                             f"'concat' (got {fusion!r})")
        self.keys, self.fusion = keys, fusion
        self.modality_weights = check_modality_weights(keys, modality_weights,
                                                       'RefineItemGraph')
        alphas = self._alphas(alpha, keys, fusion)
        knn_args: Any = dict(include_self=include_self, chunk_size=chunk_size,
                             backend=backend, nlist=nlist, nprobe=nprobe,
                             candidates=candidates, progress=progress,
                             group=group)
        transforms: List[BaseTransform] = []
        self.fuse: Optional[FuseFeatures] = None
        if len(keys) == 1:
            self.knns = [ThresholdKNN(knn_k, alphas[0], key=keys[0], **knn_args)]
        elif fusion == 'concat':
            self.fuse = FuseFeatures(keys, self.modality_weights, out_key=_FUSED)
            transforms.append(self.fuse)
            self.knns = [ThresholdKNN(knn_k, alphas[0], key=_FUSED, **knn_args)]
        else:
            self.knns = [ThresholdKNN(knn_k, a, key=k, relation=f'knn_{k}',
                                      weight=w, **knn_args)
                         for k, a, w in zip(keys, alphas, self.modality_weights,
                                            strict=True)
                         if w > 0]
        self.knn = self.knns[0]
        self.cooccurrence = JaccardCoOccurrence(jaccard_k, candidates,
                                                progress, group)
        self.normalize = NormalizeItemGraph(
            relations=[t.relation for t in self.knns] + ['cooccurs'],
            degree=degree, symmetrize=symmetrize,
            sparse_adjacency=sparse_adjacency)
        super().__init__([*transforms, *self.knns, self.cooccurrence,
                          self.normalize])

    @staticmethod
    def _alphas(alpha: Union[None, float, Sequence[Optional[float]]],
                keys: List[str], fusion: str) -> List[Optional[float]]:
        if alpha is None or isinstance(alpha, (int, float)):
            return [alpha] * len(keys)
        alphas = list(alpha)
        if len(keys) == 1 or fusion == 'concat':
            if len(alphas) != 1:
                raise ValueError(f"RefineItemGraph: one 'alpha' thresholds "
                                 f"the {'fused ' if len(keys) > 1 else ''}"
                                 f"similarity (got {alphas}); per-modality "
                                 f"thresholds need several keys and "
                                 f"fusion='mix'")
            return alphas * len(keys)
        if len(alphas) != len(keys):
            raise ValueError(f"RefineItemGraph: 'alpha' has {len(alphas)} "
                             f"value(s) for {len(keys)} keys {keys}: give one "
                             f"per key, or a single value for all")
        return alphas

    def forward(self, data: Any) -> Any:
        data = super().forward(data)
        if self.fuse is not None:
            # The fused features were only the search's input.
            del data['item'][_FUSED]
        return data

    def __repr__(self) -> str:
        alpha: Any = self.knn.alpha
        if len(self.knns) > 1:
            alpha = [t.alpha for t in self.knns]
        args = [f'knn_k={self.knn.k}', f'alpha={alpha}',
                f'jaccard_k={self.cooccurrence.k}']
        if self.keys != ['x']:
            args.append(f'key={self.keys[0]!r}' if len(self.keys) == 1
                        else f'key={self.keys}')
        if len(self.keys) > 1:
            args.append(f"fusion='{self.fusion}'")
            args.append(f'modality_weights={self.modality_weights}')
        if self.knn.include_self:
            args.append('include_self=True')
        if self.normalize.degree != 'row':
            args.append(f"degree='{self.normalize.degree}'")
        if self.normalize.symmetrize:
            args.append('symmetrize=True')
        if self.knn.backend != 'torch':
            args.append(f"backend='{self.knn.backend}'")
        return f'{self.__class__.__name__}({", ".join(args)})'
