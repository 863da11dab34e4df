r"""FREEDOM: a frozen item-item graph and a degree-sensitively pruned
user-item graph (`Zhou and Shen, MM'23 <https://arxiv.org/abs/2211.06924>`_)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import Linear, ModuleDict, Parameter, ParameterDict
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce

from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.nn._spmm import (
    _CSR,
    _cached_flow_csr,
    _FlowCache,
    _LayerMean,
    _spmm,
)
from mllmrec_pyg.nn.adjacency import bipartite_edges, edge_index_adjacency
from mllmrec_pyg.nn.conv import LightGCNConv
from mllmrec_pyg.nn.loss import bpr_loss
from mllmrec_pyg.nn.models.base import Recommender
from mllmrec_pyg.nn.models.mllmrec import ITEM_SIMILAR
from mllmrec_pyg.transforms._topk import cosine_topk
from mllmrec_pyg.transforms.fuse_features import (  # noqa: F401 (re-exported)
    IMAGE_FEATURE,
    modality_weights_default,
)

#: The item feature attributes :meth:`FREEDOM.from_data` takes as
#: modalities, in this order, those present: the dataset's text features
#: (MMRec's ``text_feat.npy``), vision features, audio features, and
#: :obj:`x` (e.g. MiniLM embeddings of the item text).
FREEDOM_FEATURES: Tuple[str, ...] = ('text_feat', 'image_feat', 'audio_feat', 'x')

# The default mix of the per-modality graphs (the image weight rule,
# modality_weights_default) lives with FuseFeatures: RefineItemGraph's
# multimodal mix uses the same one.

_ITEM_GRAPHS = ('own', 'data')


def row_degree_normalize(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Returns the weights of the binary graph :obj:`edge_index` (matrix
    coordinates, :math:`(i, j)` at :obj:`(edge_index[0], edge_index[1])`)
    normalised symmetrically with ROW sums as degrees, as FREEDOM's
    :obj:`compute_normalized_laplacian` does:

    .. math::
        \hat{S}_{ij} = \frac{1}{\sqrt{d_i\, d_j}}, \qquad
        d_i = \sum_j S_{ij}

    Entries whose column has no row of its own (degree :obj:`0`) get
    :obj:`0`.  On a :math:`k`-NN graph every row has :math:`k` entries, so
    every weight is exactly :math:`1/k` (computed as
    :math:`1/\sqrt{d_i d_j}`, which is exact for a perfect square).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` entries, no duplicates.
        num_nodes (int): The number of nodes.
    """
    row, col = edge_index[0], edge_index[1]
    deg = torch.bincount(row, minlength=num_nodes).to(torch.float32)
    prod = deg[row] * deg[col]
    return torch.where(prod > 0, 1.0 / prod.sqrt(), torch.zeros_like(prod))


def knn_item_graph(x: Tensor, k: int = 10) -> Tuple[Tensor, Tensor]:
    r"""Returns the frozen item graph of one modality of FREEDOM: the cosine
    top-:math:`k` neighbours of every item, the item itself included
    (similarity :obj:`1`, always selected), unweighted, then normalised by
    :func:`row_degree_normalize`, i.e. every entry is :math:`1/k`, a mean
    over the :math:`k` neighbours:

    .. math::
        S_{ij} = \begin{cases} 1 & j \in \operatorname{top-}\!k_{j'}
        \cos(\mathbf{f}_i, \mathbf{f}_{j'}) \\ 0 & \text{otherwise}
        \end{cases}, \qquad \hat{\mathbf{S}} =
        \mathbf{D}^{-1/2} \mathbf{S} \mathbf{D}^{-1/2} = \frac{1}{k}
        \mathbf{S}

    The search is exact and chunked (:obj:`cosine_topk`): the
    :obj:`[N, N]` similarity is never formed.  Ties go to the lower item
    index; items whose features are all zeros select and receive nothing
    (the official code divides by their zero norm); with fewer than
    :math:`k` items, :math:`k` is the number of items.

    Returns :obj:`(edge_index, edge_weight)` in matrix coordinates: item
    :obj:`edge_index[0]` receives from :obj:`edge_index[1]`.

    Args:
        x (torch.Tensor): The :obj:`[N, F]` features of the modality.
        k (int, optional): Neighbours per item, itself included.
            (default: :obj:`10`)
    """
    if k < 1:
        raise ValueError(f"'k' must be >= 1 (got {k})")
    row, col, _ = cosine_topk(x.detach().float(), k, include_self=True)
    edge_index = torch.stack([row, col])
    return edge_index, row_degree_normalize(edge_index, x.size(0))


def mixed_item_graph(features: Sequence[Tensor], weights: Sequence[float],
                     k: int = 10) -> Tuple[Tensor, Tensor]:
    r"""Returns FREEDOM's frozen item graph, the weighted sum of the
    per-modality :func:`knn_item_graph`\ s,

    .. math::
        \mathbf{S} = \sum_{m} \alpha_m \hat{\mathbf{S}}^{m}

    as sparse :obj:`(edge_index, edge_weight)` in matrix coordinates,
    coalesced (an entry present in several modalities sums their weights).

    Args:
        features (Sequence[torch.Tensor]): The :obj:`[N, F_m]` features of
            each modality.
        weights (Sequence[float]): :math:`\alpha_m`, one per modality, used
            as given (see :func:`modality_weights_default`).
        k (int, optional): Neighbours per item, itself included.
            (default: :obj:`10`)
    """
    if len(features) == 0 or len(features) != len(weights):
        raise ValueError(f"Need one weight per modality (got {len(features)} "
                         f"modalities and {len(weights)} weights)")
    num_items = features[0].size(0)
    indices, values = [], []
    for x, alpha in zip(features, weights, strict=True):
        edge_index, edge_weight = knn_item_graph(x, k)
        indices.append(edge_index)
        values.append(float(alpha) * edge_weight)
    if len(features) == 1 and float(weights[0]) == 1.0:
        return indices[0], values[0]
    return coalesce(torch.cat(indices, dim=1), torch.cat(values),
                    num_nodes=num_items, reduce='sum')


def pruning_weights(edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    r"""Returns FREEDOM's degree-sensitive sampling weight of every
    user-item edge,

    .. math::
        w_{ui} = \frac{1}{\sqrt{d_u\, d_i}}

    with :math:`d_u`, :math:`d_i` the degrees in :obj:`edge_index` (pass
    unique TRAINING edges).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` user -> item edges.
        num_users (int): The number of users.
        num_items (int): The number of items.
    """
    user, item = edge_index[0], edge_index[1]
    d_u = torch.bincount(user, minlength=num_users).to(torch.float32)
    d_i = torch.bincount(item, minlength=num_items).to(torch.float32)
    return 1.0 / (d_u[user] * d_i[item]).sqrt()


def sample_without_replacement(weight: Tensor, num_samples: int,
                               generator: torch.Generator | None = None) -> Tensor:
    r"""Returns :obj:`num_samples` distinct indices into :obj:`weight`,
    drawn one after the other with probability proportional to the weights
    of those not drawn yet (successive sampling, the law of
    :func:`torch.multinomial` with :obj:`replacement=False`), sorted.

    Implemented with exponential keys (Efraimidis and Spirakis): the
    :obj:`num_samples` largest :math:`w_e / q_e`, :math:`q_e \sim
    \mathrm{Exp}(1)`, which is how PyTorch samples without replacement too,
    without :func:`torch.multinomial`'s limit of :math:`2^{24}` categories.
    Runs on the device of :obj:`weight` with :obj:`generator`'s stream.

    Args:
        weight (torch.Tensor): :obj:`[E]` positive weights.
        num_samples (int): How many to draw, :obj:`0 <= num_samples <= E`.
        generator (torch.Generator, optional): The random stream.
            (default: :obj:`None`, the global one)
    """
    num = weight.numel()
    if not 0 <= num_samples <= num:
        raise ValueError(f"Cannot draw {num_samples} of {num} items without "
                         f"replacement")
    if num_samples == num:
        return torch.arange(num, device=weight.device)
    if num_samples == 0:
        return torch.empty(0, dtype=torch.long, device=weight.device)
    q = torch.empty_like(weight, dtype=torch.float64).exponential_(
        generator=generator)
    keys = weight.to(torch.float64) / q
    return keys.topk(num_samples, sorted=False).indices.sort().values


def _int64_bytes(*values: int) -> Tensor:
    return torch.tensor(values, dtype=torch.int64).view(torch.uint8)


class FREEDOM(Recommender):
    r"""FREEDOM of `"A Tale of Two Graphs: Freezing and Denoising Graph
    Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_ (Zhou and Shen, MM'23), as its
    official code (``enoche/FREEDOM``, MMRec's :obj:`FREEDOM`) behaves.

    **Frozen item graph.**  Per modality :math:`m` (raw features
    :math:`\mathbf{f}^m_i` as given, before any training), the cosine
    top-:math:`k` graph with the item itself among its :math:`k`, normalised
    with row sums as degrees, so that every entry is :math:`1/k`
    (:func:`knn_item_graph`); the modalities are mixed with weights
    :math:`\alpha_m` (:func:`modality_weights_default`: image
    :obj:`0.1`, text :obj:`0.9` when both exist) and the graph is never
    updated (:func:`mixed_item_graph`):

    .. math::
        \mathbf{S} = \sum_m \alpha_m \hat{\mathbf{S}}^{m}, \qquad
        \tilde{\mathbf{h}}_i = \left(\mathbf{S}^{L_m} \mathbf{E}_{\mathcal{I}}
        \right)_i

    where :math:`\mathbf{E}_{\mathcal{I}}` are the item ID embeddings (not
    the features) and :math:`L_m` = :obj:`num_mm_layers`, computed once per
    forward pass.

    **Denoised user-item graph.**  A LightGCN over users and items, the mean
    of layers :math:`0..L_{ui}`, on the TRAINING interactions:

    .. math::
        \mathbf{E} = \frac{1}{L_{ui} + 1} \sum_{l=0}^{L_{ui}}
        \tilde{\mathbf{A}}^{l} \mathbf{E}^{(0)}, \qquad
        \mathbf{h}_u = \mathbf{e}_u, \quad
        \mathbf{h}_i = \mathbf{e}_i + \tilde{\mathbf{h}}_i

    In training, :math:`\tilde{\mathbf{A}}` is the symmetrically
    normalised graph of :math:`\lfloor E (1 - p) \rfloor` edges (the
    official :obj:`int(E * (1 - dropout))`, float rounding included; :math:`E`
    unique training interactions, :math:`p` = :obj:`dropout`) drawn without
    replacement with probability

    .. math::
        P(\text{keep } (u, i)) \propto \frac{1}{\sqrt{d_u\, d_i}}

    (:func:`pruning_weights`, :func:`sample_without_replacement`), its
    degrees being those of the kept graph.  In evaluation mode
    (:meth:`embed` under :obj:`model.eval()`, as the evaluator calls it) the
    full normalised training graph is used.  :obj:`dropout=0` trains on the
    full graph too.

    **Loss.**  BPR on :math:`\hat{y}_{ui} = \mathbf{h}_u^{\top}
    \mathbf{h}_i` plus, weighted by :obj:`reg_weight` :math:`\lambda`
    (FREEDOM's name; it is no L2 term), the BPR of every modality's
    projected features against the same users:

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}}\left(\mathbf{h}_u,
        \mathbf{h}_{i^+}, \mathbf{h}_{i^-}\right) + \lambda \sum_m
        \mathcal{L}_{\mathrm{BPR}}\left(\mathbf{h}_u, \mathbf{W}_m
        \mathbf{f}^m_{i^+} + \mathbf{b}_m, \mathbf{W}_m \mathbf{f}^m_{i^-} +
        \mathbf{b}_m\right)

    The feature tables :math:`\mathbf{f}^m` start from the raw features and
    are TRAINED (the official :obj:`nn.Embedding.from_pretrained(...,
    freeze=False)`) unless :obj:`freeze_features`; :math:`\mathbf{W}_m` are
    :class:`~torch.nn.Linear` layers to :obj:`feat_embed_dim` with PyTorch's
    default initialisation; the ID embeddings are Xavier-uniform.  No
    weight decay.

    **When the graph is re-pruned.**  The official trainer prunes before
    every epoch; this package's :class:`~mllmrec_pyg.train.Trainer` has no
    epoch hook, so the model counts its training-mode :meth:`loss` calls and
    re-prunes (:meth:`resample`) at the first call and every
    :attr:`num_batches_per_epoch` :math:`= \lceil E_{\text{train}} /
    \text{batch\_size} \rceil` calls after (:math:`E_{\text{train}}`
    counting repeated interactions, as the trainer's negative sampler does).
    :obj:`batch_size` must therefore be the trainer's; with
    :obj:`batch_size=None` the model never re-prunes by itself and
    :meth:`resample` must be called before each epoch.  The normalised
    pruned graph is built once per draw, not per batch.  The draws come from
    the model's own :class:`torch.Generator` (CPU, seeded with :obj:`seed`):
    two models with the same seed prune identically, on any device and in
    any process.  The generator state and the batch count are part of
    :meth:`state_dict` (as :obj:`_extra_state`), so a checkpointed run
    resumes with the same graphs.

    .. note::
        Deviations from the official code, none changing the model:

        * The item graph is built by an exact, chunked top-:math:`k` search
          instead of the dense :math:`N \times N` similarity; ties go to the
          lower index and the item is forced into its own top-:math:`k`
          (the official :func:`torch.topk` could drop it for an exact
          duplicate); all-zero feature rows get no edges instead of NaN.
          It is never cached on disk (the official cache key holds only
          :math:`k` and the image weight).
        * Any number of modalities (the official code has image and text).
        * The pruning draws from the model's generator, not the global one,
          and on CPU, with exponential keys (the law of
          :func:`torch.multinomial` without replacement).  Repeated
          training interactions count once.
        * The propagations run as fused weighted embedding-bag sums over CSR
          arrays of the graph and of its transpose (for the backward pass),
          built once per graph (per draw), the layer mean in one autograd
          node; sums may differ from a sparse product in float rounding.
        * The projected features are computed for the batch's items only,
          and the modality terms are skipped when :obj:`reg_weight=0`
          (identical values and gradients).

    Args:
        num_users (int): The number of users.
        edge_index (torch.Tensor): :obj:`[2, E_train]` TRAINING user -> item
            interactions (:func:`mllmrec_pyg.data.train_edge_index`).
        item_features (Mapping[str, torch.Tensor]): The raw item features of
            each modality, :obj:`[num_items, F_m]`, by name (e.g.
            :obj:`{"text_feat": ..., "image_feat": ...}`); at least one.
            They initialise the trainable tables :attr:`features`.
        embedding_dim (int, optional): Size of the ID embeddings.
            (default: :obj:`64`)
        feat_embed_dim (int, optional): Output size of the feature
            projections; must equal :obj:`embedding_dim` when
            :obj:`reg_weight != 0`. (default: :obj:`64`)
        knn_k (int, optional): Neighbours per item in each modality graph,
            the item itself included. (default: :obj:`10`)
        mm_image_weight (float, optional): The weight of
            :obj:`"image_feat"`'s graph in the default mix
            (:func:`modality_weights_default`). (default: :obj:`0.1`)
        modality_weights (Mapping[str, float], optional): Explicit weights
            :math:`\alpha_m` by modality name, one for every modality used,
            taken as given. (default: :obj:`None`, the default rule)
        modalities (Sequence[str], optional): The names of
            :obj:`item_features` to use, in this order. (default: :obj:`None`,
            all)
        num_mm_layers (int, optional): Propagations :math:`L_m` over the
            item graph. (default: :obj:`1`)
        num_ui_layers (int, optional): LightGCN layers :math:`L_{ui}`.
            (default: :obj:`2`)
        dropout (float, optional): The share :math:`p \in [0, 1)` of
            user-item edges pruned in each epoch. (default: :obj:`0.8`)
        reg_weight (float, optional): The weight :math:`\lambda` of the
            modality BPR terms. (default: :obj:`1e-4`)
        freeze_features (bool, optional): If :obj:`True`, the raw feature
            tables are not trained (the official code trains them).
            (default: :obj:`False`)
        item_graph (str, optional): :obj:`"own"` builds the item graph from
            the features; :obj:`"data"` means it is given
            (:obj:`item_edge_index` must be passed; :meth:`from_data` reads
            :obj:`data['item', 'similar', 'item']`).  A given
            :obj:`item_edge_index` is used in either case.
            (default: :obj:`"own"`)
        item_edge_index (torch.Tensor, optional): A given item graph,
            :obj:`[2, E_I]` entries in matrix coordinates (item
            :obj:`item_edge_index[0]` receives from
            :obj:`item_edge_index[1]`), e.g. MLLMRec's refined graph, used
            instead of building one. (default: :obj:`None`)
        item_edge_weight (torch.Tensor, optional): Its :obj:`[E_I]` weights,
            taken as given; :obj:`None` normalises the binary graph by
            :func:`row_degree_normalize`. (default: :obj:`None`)
        batch_size (int, optional): The trainer's batch size, which sets
            :attr:`num_batches_per_epoch`; :obj:`None` disables the
            automatic re-pruning. (default: :obj:`2048`)
        seed (int, optional): Seed of the pruning generator.
            (default: :obj:`2024`)
    """

    @property
    def may_skip_parameters(self) -> bool:  # type: ignore[override]
        r"""The modality projections and features get no gradient when
        :obj:`reg_weight=0` (see :class:`Recommender`)."""
        return self.reg_weight == 0

    #: The official hyper-parameter grid (``configs/model/FREEDOM.yaml``).
    MMREC_GRID: Dict[str, List[Any]] = {
        'dropout': [0.8, 0.9],
        'reg_weight': [0.0, 1e-5, 1e-4, 1e-3],
    }

    adj: Tensor
    adj_weight: Tensor | None
    item_adj: Tensor
    item_adj_weight: Tensor | None

    def __init__(
        self,
        num_users: int,
        edge_index: Tensor,
        item_features: Mapping[str, Tensor],
        *,
        embedding_dim: int = 64,
        feat_embed_dim: int = 64,
        knn_k: int = 10,
        mm_image_weight: float = 0.1,
        modality_weights: Mapping[str, float] | None = None,
        modalities: Sequence[str] | None = None,
        num_mm_layers: int = 1,
        num_ui_layers: int = 2,
        dropout: float = 0.8,
        reg_weight: float = 1e-4,
        freeze_features: bool = False,
        item_graph: str = 'own',
        item_edge_index: Tensor | None = None,
        item_edge_weight: Tensor | None = None,
        batch_size: int | None = 2048,
        seed: int = 2024,
    ):
        super().__init__()
        features = item_features
        names = self._check_features(features, modalities)
        self._check_options(knn_k, num_mm_layers, num_ui_layers, dropout,
                            item_graph, item_edge_index, batch_size)
        if reg_weight != 0 and feat_embed_dim != embedding_dim:
            raise ValueError(f"The modality BPR terms score users "
                             f"({embedding_dim}-d) against projected features: "
                             f"'feat_embed_dim' ({feat_embed_dim}) must equal "
                             f"'embedding_dim' unless reg_weight=0")
        self.num_users = num_users
        self.num_items = features[names[0]].size(0)
        self.modalities: List[str] = names
        self.embedding_dim = embedding_dim
        self.feat_embed_dim = feat_embed_dim
        self.knn_k = knn_k
        self.num_mm_layers = num_mm_layers
        self.num_ui_layers = num_ui_layers
        self.dropout = dropout
        self.reg_weight = reg_weight
        self.item_graph = 'data' if item_edge_index is not None else 'own'
        self.seed = seed

        self.user_embedding = Parameter(torch.empty(num_users, embedding_dim))
        self.item_embedding = Parameter(torch.empty(self.num_items, embedding_dim))
        self.features = ParameterDict({
            name: Parameter(features[name].detach().float().clone(),
                            requires_grad=not freeze_features)
            for name in names})
        self.projections = ModuleDict({
            name: Linear(features[name].size(1), feat_embed_dim)
            for name in names})
        self.conv = LightGCNConv()

        self._init_item_graph([features[n] for n in names], names, modality_weights,
                              mm_image_weight, item_edge_index, item_edge_weight)
        self._init_pruning(edge_index, num_users, dropout, batch_size, seed)
        self.reset_parameters()

    def _init_item_graph(self, features: List[Tensor], names: List[str],
                         modality_weights: Mapping[str, float] | None,
                         mm_image_weight: float, item_edge_index: Tensor | None,
                         item_edge_weight: Tensor | None) -> None:
        r"""The frozen item graph: the given one, or the modality-mixed
        kNN graph of the raw features."""
        # The frozen item graph (matrix coordinates; messages flow col -> row).
        if item_edge_index is None:
            weights = self._modality_weights(names, modality_weights,
                                             mm_image_weight)
            self.modality_weights: List[float] | None = weights
            item_edge_index, item_edge_weight = mixed_item_graph(
                features, weights, self.knn_k)
        else:
            self.modality_weights = None
            item_edge_index = item_edge_index.long()
            if item_edge_weight is None:
                item_edge_weight = row_degree_normalize(item_edge_index,
                                                        self.num_items)
            item_edge_weight = item_edge_weight.detach().float()
        item_adj, item_weight = edge_index_adjacency(
            item_edge_index.flip(0), item_edge_weight, self.num_items)
        self.register_buffer('item_adj', item_adj, persistent=False)
        self.register_buffer('item_adj_weight', item_weight, persistent=False)

    def _init_pruning(self, edge_index: Tensor, num_users: int, dropout: float,
                      batch_size: int | None, seed: int) -> None:
        r"""The user-item graphs: the full normalised training graph
        (evaluation) and the degree-sensitive pruning state (the unique
        training edges, their keep weights, the seeded generator and the
        batch counter)."""
        adj, weight = edge_index_adjacency(
            *bipartite_edges(edge_index, num_users, self.num_items),
            num_users + self.num_items)
        self.register_buffer('adj', adj, persistent=False)
        self.register_buffer('adj_weight', weight, persistent=False)
        # Pruning: unique training edges and their weights stay on CPU, where
        # the generator draws; only the kept graph goes to the device.
        self.train_edges = torch.unique(edge_index.detach().long().cpu(), dim=1)
        self.prune_weight = pruning_weights(self.train_edges, num_users,
                                            self.num_items)
        self.num_keep = int(self.train_edges.size(1) * (1.0 - dropout))
        self.batch_size = batch_size
        self.num_batches_per_epoch: int | None = (
            None if batch_size is None
            else max(1, math.ceil(edge_index.size(1) / batch_size)))
        self.generator = torch.Generator().manual_seed(seed)
        self._batches = 0
        self._draw_state: Tensor | None = None
        self._kept: Tensor | None = None
        self._pruned: Tuple[Tensor, Tensor | None] | None = None
        self._csr_cache: _FlowCache = {}

    @staticmethod
    def _check_features(features: Mapping[str, Tensor],
                        modalities: Sequence[str] | None) -> List[str]:
        names = list(features) if modalities is None else list(modalities)
        if len(names) == 0:
            raise ValueError("FREEDOM needs at least one item modality "
                             "(e.g. {'text_feat': ...})")
        missing = [n for n in names if n not in features]
        if missing:
            raise ValueError(f"Modalities {missing} are not among the given "
                             f"features {list(features)}")
        if len(set(names)) != len(names):
            raise ValueError(f"Modalities repeat: {names}")
        rows = {n: features[n].size(0) for n in names}
        for name in names:
            if features[name].dim() != 2:
                raise ValueError(f"Features '{name}' must be [num_items, F] "
                                 f"(got shape {list(features[name].shape)})")
        if len(set(rows.values())) != 1:
            raise ValueError(f"The modalities have different numbers of "
                             f"items: {rows}")
        return names

    @staticmethod
    def _check_options(knn_k: int, num_mm_layers: int, num_ui_layers: int,
                       dropout: float, item_graph: str,
                       item_edge_index: Tensor | None,
                       batch_size: int | None) -> None:
        if knn_k < 1:
            raise ValueError(f"'knn_k' must be >= 1 (got {knn_k})")
        if num_mm_layers < 0 or num_ui_layers < 0:
            raise ValueError(f"Layer counts must be >= 0 (got num_mm_layers="
                             f"{num_mm_layers}, num_ui_layers={num_ui_layers})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        if item_graph not in _ITEM_GRAPHS:
            raise ValueError(f"Unknown item_graph '{item_graph}' (expected "
                             f"'own' or 'data')")
        if item_graph == 'data' and item_edge_index is None:
            raise ValueError("item_graph='data' needs the item graph "
                             "('item_edge_index')")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"'batch_size' must be positive or None "
                             f"(got {batch_size})")

    @staticmethod
    def _modality_weights(names: List[str], given: Mapping[str, float] | None,
                          image_weight: float) -> List[float]:
        if given is None:
            return modality_weights_default(names, image_weight)
        if set(given) != set(names):
            raise ValueError(f"'modality_weights' must give one weight per "
                             f"modality {names} (got {sorted(given)})")
        return [float(given[n]) for n in names]

    def reset_parameters(self) -> None:
        r"""Resets the ID embeddings (Xavier-uniform) and the projections
        (PyTorch's default); the feature tables keep their values."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_embedding)
        for module in self.projections.values():
            assert isinstance(module, Linear)
            module.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> FREEDOM:
        r"""Builds the model from :obj:`data`: every item modality of
        :data:`FREEDOM_FEATURES` present on :obj:`data['item']`
        (:obj:`text_feat`, :obj:`image_feat`, :obj:`audio_feat`, :obj:`x`;
        :obj:`modalities` selects among them) and the TRAINING interactions
        (:func:`~mllmrec_pyg.data.train_edge_index`).  With
        :obj:`item_graph="data"`, the item graph is
        :obj:`data['item', 'similar', 'item']` (:obj:`edge_index`, optional
        :obj:`edge_weight`, e.g. from
        :class:`~mllmrec_pyg.transforms.RefineItemGraph`).

        Args:
            data (torch_geometric.data.HeteroData): The dataset.
            **kwargs (optional): Other arguments of :class:`FREEDOM`.
        """
        store = data['item']
        features = {name: getattr(store, name) for name in FREEDOM_FEATURES
                    if getattr(store, name, None) is not None}
        if len(features) == 0:
            raise ValueError(f"FREEDOM needs item features: data['item']."
                             f"{', .'.join(FREEDOM_FEATURES)} are all missing; "
                             f"encode the item text first")
        num_items = int(store.num_nodes)
        wrong = {n: f.size(0) for n, f in features.items()
                 if f.size(0) != num_items}
        if wrong:
            raise ValueError(f"data['item'] features have the wrong number of "
                             f"rows {wrong} for {num_items} items")
        if kwargs.get('item_graph', 'own') == 'data' and \
                kwargs.get('item_edge_index') is None:
            if ITEM_SIMILAR not in data.edge_types:
                raise ValueError("item_graph='data' but data has no ('item', "
                                 "'similar', 'item') graph: apply "
                                 "mllmrec_pyg.transforms.RefineItemGraph first, "
                                 "or pass item_graph='own'")
            graph = data[ITEM_SIMILAR]
            kwargs['item_edge_index'] = graph.edge_index
            kwargs.setdefault('item_edge_weight',
                              getattr(graph, 'edge_weight', None))
        return cls(int(data['user'].num_nodes), train_edge_index(data), features,
                   **kwargs)

    # ----------------------------------------------------------- pruning --
    @property
    def pruned_edge_index(self) -> Tensor | None:
        r"""The :obj:`[2, K]` user -> item edges of the current pruned
        graph (CPU), or :obj:`None` before the first draw."""
        return None if self._kept is None else self.train_edges[:, self._kept]

    def resample(self) -> Tensor:
        r"""Draws a new pruned user-item graph from the model's generator,
        builds its normalised adjacency on the model's device, and returns
        its :obj:`[2, K]` kept user -> item edges.  Called automatically
        at the first training-mode :meth:`loss` and every
        :attr:`num_batches_per_epoch` calls after; call it yourself before
        each epoch when :obj:`batch_size=None`."""
        self._draw_state = self.generator.get_state()
        if self.dropout <= 0.0:
            self._kept = torch.arange(self.train_edges.size(1))
        else:
            self._kept = sample_without_replacement(
                self.prune_weight, self.num_keep, self.generator)
        self._pruned = None
        self._training_graph()
        kept = self.pruned_edge_index
        assert kept is not None
        return kept

    def _training_graph(self) -> Tuple[Tensor, Tensor | None]:
        r"""The normalised pruned graph, drawn if none exists yet and
        rebuilt (not redrawn) if the model has moved to another device."""
        if self._kept is None:
            self.resample()
        device = self.user_embedding.device
        if self._pruned is None or self._pruned[0].device != device:
            if self.dropout <= 0.0:
                self._pruned = (self.adj, self.adj_weight)
            else:
                assert self._kept is not None
                kept = self.train_edges[:, self._kept].to(device)
                self._pruned = edge_index_adjacency(
                    *bipartite_edges(kept, self.num_users, self.num_items),
                    self.num_users + self.num_items)
        return self._pruned

    def _count_batch(self) -> None:
        nb = self.num_batches_per_epoch
        if nb is not None and self._batches > 0 and self._batches % nb == 0:
            self.resample()
        self._batches += 1

    def get_extra_state(self) -> Tensor:
        r"""The pruning state, as one :obj:`uint8` tensor: the number of
        training batches counted, whether a graph was drawn, and the
        generator state before the current graph's draw (or now)."""
        drawn = self._draw_state is not None
        state = self._draw_state if self._draw_state is not None \
            else self.generator.get_state()
        return torch.cat([_int64_bytes(self._batches, int(drawn)), state])

    def set_extra_state(self, state: Any) -> None:
        r"""Restores :meth:`get_extra_state`, redrawing the current pruned
        graph (which leaves the generator where it was)."""
        state = torch.as_tensor(state).cpu()
        head = state[:16].clone().view(torch.int64)
        self._batches, drawn = int(head[0]), bool(head[1])
        self.generator.set_state(state[16:].clone())
        self._draw_state = self._kept = self._pruned = None
        if drawn:
            self.resample()

    # ----------------------------------------------------------- forward --
    def _flow(self, key: str, index: Tensor, weight: Tensor | None,
              num_nodes: int) -> Tuple[_CSR, _CSR]:
        r"""The CSR arrays (both ways) of the graph :obj:`index`, built once
        and reused while :obj:`index` and :obj:`weight` are the same tensors
        (a new draw or a device move gives new ones)."""
        return _cached_flow_csr(self._csr_cache, key, index, weight, num_nodes)

    def _propagate(self, adj: Tensor, weight: Tensor | None,
                   key: str) -> Tuple[Tensor, Tensor]:
        h: Tensor = self.item_embedding
        if self.num_mm_layers > 0:
            item_graph = self._flow('item', self.item_adj, self.item_adj_weight,
                                    self.num_items)
            for _ in range(self.num_mm_layers):
                h = _spmm(h, item_graph)
        x = torch.cat([self.user_embedding, self.item_embedding], dim=0)
        graph = self._flow(key, adj, weight, self.num_users + self.num_items)
        user, item = _LayerMean.apply(x, graph[0], graph[1], self.num_ui_layers,
                                      self.num_users)
        return user, item + h

    def embed(self) -> Tuple[Tensor, Tensor]:
        r"""Returns the user and item representations: over the current
        pruned graph in training mode, over the full training graph in
        evaluation mode."""
        if self.training:
            return self._propagate(*self._training_graph(), key='train')
        return self._propagate(self.adj, self.adj_weight, key='eval')

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        r"""BPR plus :obj:`reg_weight` times the modality BPR terms.  In
        training mode it counts the batch (re-pruning at epoch boundaries,
        see the class note) and propagates over the pruned graph; in
        evaluation mode over the full graph, without counting."""
        if self.training:
            self._count_batch()
        user_emb, item_emb = self.embed()
        u = user_emb[user]
        loss = bpr_loss((u * item_emb[pos_item]).sum(dim=-1),
                        (u * item_emb[neg_item]).sum(dim=-1))
        if self.reg_weight == 0:
            return loss
        items = torch.cat([pos_item, neg_item])
        modal = torch.zeros((), dtype=loss.dtype, device=loss.device)
        for name in self.modalities:
            feats = self.projections[name](self.features[name][items])
            pos, neg = feats[:pos_item.numel()], feats[pos_item.numel():]
            modal = modal + bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))
        return loss + self.reg_weight * modal

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, knn_k={self.knn_k}, '
                f'item_graph={self.item_graph}, dropout={self.dropout}, '
                f'reg_weight={self.reg_weight})')
