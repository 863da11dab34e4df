from __future__ import annotations

from typing import Optional

from torch_geometric.transforms import Compose

from mllmrec_pyg.transforms.jaccard_cooccurrence import JaccardCoOccurrence
from mllmrec_pyg.transforms.normalize_item_graph import NormalizeItemGraph
from mllmrec_pyg.transforms.threshold_knn import ThresholdKNN


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
        alpha (float, optional): Similarity threshold :math:`\alpha`, or
            :obj:`None` for none (paper: Baby 0.7, Sports 0.4, Clothing 0.6).
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
        key (str, optional): The item feature attribute.
            (default: :obj:`"x"`)
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
    """
    def __init__(
        self,
        knn_k: int = 10,
        alpha: Optional[float] = 0.4,
        jaccard_k: int = 10,
        include_self: bool = False,
        degree: str = 'row',
        symmetrize: bool = False,
        sparse_adjacency: bool = False,
        key: str = 'x',
        chunk_size: Optional[int] = None,
        backend: str = 'torch',
        nlist: Optional[int] = None,
        nprobe: Optional[int] = None,
    ) -> None:
        self.knn = ThresholdKNN(knn_k, alpha, include_self=include_self,
                                key=key, chunk_size=chunk_size,
                                backend=backend, nlist=nlist, nprobe=nprobe)
        self.cooccurrence = JaccardCoOccurrence(jaccard_k)
        self.normalize = NormalizeItemGraph(degree=degree,
                                            symmetrize=symmetrize,
                                            sparse_adjacency=sparse_adjacency)
        super().__init__([self.knn, self.cooccurrence, self.normalize])

    def __repr__(self) -> str:
        args = [f'knn_k={self.knn.k}', f'alpha={self.knn.alpha}',
                f'jaccard_k={self.cooccurrence.k}']
        if self.knn.include_self:
            args.append('include_self=True')
        if self.normalize.degree != 'row':
            args.append(f"degree='{self.normalize.degree}'")
        if self.normalize.symmetrize:
            args.append('symmetrize=True')
        if self.knn.backend != 'torch':
            args.append(f"backend='{self.knn.backend}'")
        return f'{self.__class__.__name__}({", ".join(args)})'
