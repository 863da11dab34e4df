r"""SOIL of "SOIL: Contrastive Second-Order Interest Learning for
Multimodal Recommendation" (Su et al., MM'24; official code
`TL-UESTC/SOIL <https://github.com/TL-UESTC/SOIL>`_): its two graph builds (the interest-aware item graph and the
second-order user-item edges), sparse and in blocks, and the model."""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import Linear, ModuleList, Parameter, ParameterList, Sequential
from torch_geometric import EdgeIndex
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce, to_torch_csr_tensor

from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.nn._spmm import _Flow, _flow_csr, _layer_mean, _spmm
from mllmrec_pyg.nn.adjacency import bipartite_edges, edge_index_adjacency
from mllmrec_pyg.nn.conv import LightGCNConv
from mllmrec_pyg.nn.loss import bpr_loss
from mllmrec_pyg.nn.models.base import Recommender
from mllmrec_pyg.nn.models.mllmrec import ITEM_SIMILAR
from mllmrec_pyg.transforms._topk import cosine_topk, ranked_topk, unit_rows

#: The item feature attributes SOIL takes as modalities, in this order,
#: every one present on :obj:`data['item']` (:obj:`x`: e.g. MiniLM
#: embeddings of the item text).
SOIL_MODALITIES: Tuple[str, ...] = ('image_feat', 'text_feat', 'audio_feat',
                                    'x')

#: The CSR arrays of SOIL's constant graphs: the augmented interaction
#: graph, the item graph of every modality, and its user-item block.
_Graphs = Tuple[_Flow, List[_Flow], _Flow]

#: Scores held by one block of a graph build (64 MiB in float32).
_BLOCK_ELEMENTS = 1 << 24


def _normalize_by_row_sums(index: Tensor, weight: Tensor,
                           num_nodes: int) -> Tensor:
    r"""Returns the weights of :math:`\mathbf{D}^{-1/2} \mathbf{M}
    \mathbf{D}^{-1/2}` for the entries :math:`M_{ij}` at :obj:`(index[0],
    index[1])`, with :math:`D_{ii} = \sum_j M_{ij}` (row sums, as the
    official code).  A node of degree :math:`\le 0` gets the factor
    :math:`0` (the official code: :obj:`inf` masked to :obj:`0` for a zero
    degree, :obj:`NaN` for a negative one)."""
    deg = weight.new_zeros(num_nodes).index_add_(0, index[0], weight)
    inv_sqrt = torch.zeros_like(deg)
    positive = deg > 0
    inv_sqrt[positive] = deg[positive].rsqrt()
    return weight * inv_sqrt[index[0]] * inv_sqrt[index[1]]


def _plain(index: Tensor) -> Tensor:
    return index.as_tensor() if isinstance(index, EdgeIndex) else index


def _drop_zeros(index: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
    keep = weight != 0
    return index[:, keep], weight[keep]


def _unique_interactions(edge_index: Tensor, num_users: int,
                         num_items: int) -> Tensor:
    r"""Validates the :obj:`[2, E]` user -> item interactions and returns
    them sorted by user, then item, each pair once (the official code reads
    the binary interaction matrix)."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"Interactions must have shape [2, E] "
                         f"(got {list(edge_index.shape)})")
    if edge_index.numel() > 0 and (
            int(edge_index.min()) < 0 or int(edge_index[0].max()) >= num_users
            or int(edge_index[1].max()) >= num_items):
        raise ValueError(f"Interactions out of range ({num_users} users, "
                         f"{num_items} items)")
    return coalesce(edge_index.long(), num_nodes=max(num_users, num_items))


def _history_matrix(edge_index: Tensor, num_users: int,
                    num_items: int, dtype: torch.dtype) -> Tensor:
    r"""The binary :obj:`[num_users, num_items]` history matrix
    :math:`\mathbf{R}` as a :class:`torch.sparse_csr` tensor."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=UserWarning,
                                message='Sparse CSR tensor support is in beta')
        warnings.filterwarnings('ignore', category=UserWarning,
                                message='Sparse invariant checks')
        return to_torch_csr_tensor(
            edge_index,
            torch.ones(edge_index.size(1), dtype=dtype,
                       device=edge_index.device),
            size=(num_users, num_items))


def history_topk(
    edge_index: Tensor,
    features: List[Tensor],
    num_users: int,
    k: int,
    exclude_history: bool,
    block_elements: int = _BLOCK_ELEMENTS,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""For every user :math:`u` with a history :math:`\mathcal{I}_u`
    (:obj:`edge_index`: unique (user, item) pairs), the :obj:`k` items of
    largest score

    .. math::
        s_{uj} = \sum_{i \in \mathcal{I}_u} \prod_{m} S^{m}_{ij}, \qquad
        S^{m}_{ij} = \frac{\mathbf{x}^{m\top}_i \mathbf{x}^{m}_j}
        {\lVert \mathbf{x}^{m}_i \rVert \, \lVert \mathbf{x}^{m}_j \rVert}

    over the modalities :obj:`features` (the cosine similarity of a zero row
    is :obj:`0`), among all items or, with :obj:`exclude_history`, among
    the items outside :math:`\mathcal{I}_u`.  Ties go to the lower item
    index.

    The :obj:`[N, N]` similarities and the :obj:`[U, N]` scores are never
    formed: columns are processed in blocks of :math:`w` items, with
    :math:`(N + U)\, w \approx` :obj:`block_elements`; each block computes
    :math:`\prod_m \mathbf{S}^{m}_{:, \text{block}}` and the sparse product
    :math:`\mathbf{R}\, \prod_m \mathbf{S}^{m}_{:, \text{block}}`, whose
    top-:obj:`k` is merged into the running top-:obj:`k` of every user.
    Memory is :math:`O(\text{block} + Uk)`, with no loop over users.

    Returns :obj:`(user, item, score)`, sorted by user, then score
    descending, then item; users without history get no entry.
    """
    num_items = features[0].size(0)
    device = features[0].device
    k = min(k, num_items)
    if k <= 0 or edge_index.numel() == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty.clone(), features[0].new_empty(0)
    unit = [unit_rows(x, 1, include_self=True).z for x in features]
    hist = _history_matrix(edge_index, num_users, num_items, unit[0].dtype)
    width = max(1, block_elements // (num_items + num_users))
    best_score = unit[0].new_full((num_users, k), float('-inf'))
    best_item = torch.zeros(num_users, k, dtype=torch.long, device=device)
    user, item = edge_index
    for first in range(0, num_items, width):
        last = min(first + width, num_items)
        sim = unit[0] @ unit[0][first:last].t()
        for z in unit[1:]:
            sim.mul_(z @ z[first:last].t())
        scores = torch.sparse.mm(hist, sim)
        if exclude_history:
            inside = (item >= first) & (item < last)
            scores[user[inside], item[inside] - first] = float('-inf')
        values, index = ranked_topk(scores, min(k, last - first))
        # Earlier blocks hold lower indices and come first: ties keep
        # going to the lower index.
        best_score, pos = ranked_topk(torch.cat([best_score, values], dim=1),
                                      k)
        best_item = torch.cat([best_item, index + first], dim=1).gather(1, pos)
    has_history = torch.zeros(num_users, dtype=torch.bool, device=device)
    has_history[user] = True
    keep = torch.isfinite(best_score) & has_history.unsqueeze(1)
    rows = torch.arange(num_users, device=device).unsqueeze(1).expand(-1, k)
    return rows[keep], best_item[keep], best_score[keep]


def interest_item_graph(
    edge_index: Tensor,
    x: Tensor,
    num_users: int,
    k: int,
    block_elements: int = _BLOCK_ELEMENTS,
) -> Tuple[Tensor, Tensor]:
    r"""The interest-aware item-item graph of SOIL for one modality, built
    from the TRAINING histories :math:`\mathcal{I}_u` (official code, L54-91
    of :obj:`models/soil.py`): every user selects the :math:`k`
    (:obj:`knn_i`) items most similar to its whole history, and each of its
    items is linked to them, weighted by their similarity; the links of all
    users are summed and normalised symmetrically:

    .. math::
        \mathcal{C}_u = \operatorname{top-}\!k_j \sum_{i \in \mathcal{I}_u}
        S_{ij}, \qquad M_{ij} = \sum_{u:\, i \in \mathcal{I}_u,\, j \in
        \mathcal{C}_u} S_{ij}, \qquad \hat{\mathbf{M}} = \mathbf{D}^{-1/2}
        \mathbf{M} \mathbf{D}^{-1/2}, \quad D_{ii} = \sum_j M_{ij}

    with :math:`S` the cosine similarity of :obj:`x`.  The selection may
    contain the user's own items (its history is not excluded, as in the
    official code).  :math:`\mathcal{C}_u` comes from :func:`history_topk`
    (blocks, no loop over users) and :math:`\mathbf{M}` has at most
    :math:`k` entries per training interaction; item :obj:`edge_index[0]`
    receives from :obj:`edge_index[1]` in the returned graph (matrix
    coordinates, entries of weight :obj:`0` dropped).

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` TRAINING user -> item
            interactions (repeated pairs count once).
        x (torch.Tensor): The modality's item features :obj:`[N, F]`.
        num_users (int): The number of users.
        k (int): Items selected per user (:obj:`knn_i`); :obj:`0` gives an
            empty graph.
        block_elements (int, optional): Scores per block.
            (default: :obj:`2**24`)
    """
    num_items = x.size(0)
    edge_index = _unique_interactions(edge_index, num_users, num_items)
    x = x.detach().float()
    sel_user, sel_item, _ = history_topk(edge_index, [x], num_users, k,
                                         exclude_history=False,
                                         block_elements=block_elements)
    # Every training pair (u, i) links i to each item u selected, without a
    # loop over users: offsets into the user-sorted selection.
    per_user = torch.bincount(sel_user, minlength=num_users)
    start = per_user.cumsum(0) - per_user
    user, item = edge_index
    rep = per_user[user]
    row = item.repeat_interleave(rep)
    pair_of = torch.arange(user.numel(), device=x.device).repeat_interleave(rep)
    offset = torch.arange(row.numel(), device=x.device) - (rep.cumsum(0)
                                                           - rep)[pair_of]
    col = sel_item[start[user[pair_of]] + offset]
    # M_ij = (number of users linking i to j) * S_ij: the similarities of
    # the distinct pairs only, by a sampled product (SDDMM) that never
    # gathers one feature row per pair.
    index, count = coalesce(torch.stack([row, col]),
                            torch.ones(row.numel(), device=x.device),
                            num_items, reduce='sum')
    if index.numel() == 0:
        return index, count
    z = unit_rows(x, 1, include_self=True).z
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=UserWarning,
                                message='Sparse CSR tensor support is in beta')
        warnings.filterwarnings('ignore', category=UserWarning,
                                message='Sparse invariant checks')
        pattern = to_torch_csr_tensor(index, count, size=(num_items,
                                                          num_items))
        sim = torch.sparse.sampled_addmm(pattern, z, z.t(), beta=0.0)
    weight = count * sim.values()
    return _drop_zeros(index, _normalize_by_row_sums(index, weight, num_items))


def similarity_knn_graph(x: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    r"""The weighted similarity k-NN item graph of SOIL for one modality
    (official code L78-79, MGCN's :obj:`build_knn_normalized_graph`): each
    item keeps its :math:`k` (:obj:`knn_k`) most cosine-similar items,
    itself included (similarity :obj:`1`), weighted by the similarity, and
    the directed graph is normalised with its row sums:

    .. math::
        K_{ij} = S_{ij}\, \mathbb{1}\!\left[j \in
        \operatorname{top-}\!k(S_{i,:})\right], \qquad \hat{\mathbf{K}} =
        \mathbf{D}^{-1/2} \mathbf{K} \mathbf{D}^{-1/2}, \quad D_{ii} =
        \sum_j K_{ij}

    Items with all-zero features get no edge.  Returns :obj:`(edge_index,
    edge_weight)` in matrix coordinates (row 0 receives).

    Args:
        x (torch.Tensor): The modality's item features :obj:`[N, F]`.
        k (int): Neighbours per item (:obj:`knn_k`); :obj:`0` gives an
            empty graph.
    """
    x = x.detach().float()
    if k <= 0:
        return (torch.empty(2, 0, dtype=torch.long, device=x.device),
                x.new_empty(0))
    row, col, sim = cosine_topk(x, k, include_self=True)
    index = torch.stack([row, col])
    return _drop_zeros(index, _normalize_by_row_sums(index, sim, x.size(0)))


def second_order_edges(
    edge_index: Tensor,
    features: List[Tensor],
    num_users: int,
    k: int,
    block_elements: int = _BLOCK_ELEMENTS,
) -> Tuple[Tensor, Tensor]:
    r"""The second-order user-item edges of SOIL (official code L94-140):
    every user is linked to the :math:`k` (:obj:`knn_a`) items outside its
    TRAINING history :math:`\mathcal{I}_u` of largest score, the sum over
    its history of the product of the modalities' cosine similarities,
    weighted by that score:

    .. math::
        s_{uj} = \sum_{i \in \mathcal{I}_u} \prod_{m} S^{m}_{ij}, \qquad
        X_{uj} = s_{uj}\, \mathbb{1}\!\left[j \in
        \operatorname{top-}\!k_{j \notin \mathcal{I}_u}(s_{u,:})\right]

    (:func:`history_topk`).  Returns the edges :obj:`(edge_index,
    edge_weight)` of the symmetric bipartite matrix :math:`\begin{pmatrix}
    \mathbf{0} & \mathbf{X} \\ \mathbf{X}^{\top} & \mathbf{0}
    \end{pmatrix}` over :obj:`num_users + num_items` nodes (users first),
    normalised with its row sums, :math:`\mathbf{D}_X^{-1/2} (\cdot)
    \mathbf{D}_X^{-1/2}`; :class:`SOIL` adds half of it to the normalised
    interaction graph.

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` TRAINING user -> item
            interactions (repeated pairs count once).
        features (List[torch.Tensor]): The modalities' item features, each
            :obj:`[N, F_m]`.
        num_users (int): The number of users.
        k (int): New items per user (:obj:`knn_a`); :obj:`0` gives no edge.
        block_elements (int, optional): Scores per block.
            (default: :obj:`2**24`)
    """
    num_items = features[0].size(0)
    edge_index = _unique_interactions(edge_index, num_users, num_items)
    feats = [x.detach().float() for x in features]
    user, item, score = history_topk(edge_index, feats, num_users, k,
                                     exclude_history=True,
                                     block_elements=block_elements)
    item = item + num_users
    index = torch.cat([torch.stack([user, item]), torch.stack([item, user])],
                      dim=1)
    weight = torch.cat([score, score])
    index, weight = coalesce(index, weight, num_users + num_items)
    return _drop_zeros(index, _normalize_by_row_sums(index, weight,
                                                     num_users + num_items))


def info_nce_loss(view1: Tensor, view2: Tensor,
                  temperature: float = 0.2) -> Tensor:
    r"""The InfoNCE loss of SOIL (and MGCN) between two views of a batch:
    row :math:`b` of one view is pulled towards row :math:`b` of the other,
    the other rows of the batch are the negatives,

    .. math::
        \mathcal{L}_{\mathrm{NCE}}(\mathbf{A}, \mathbf{B}) = -\frac{1}{B}
        \sum_{b=1}^{B} \log \frac{\exp(\cos(\mathbf{a}_b, \mathbf{b}_b) /
        \tau)}{\sum_{b'=1}^{B} \exp(\cos(\mathbf{a}_b, \mathbf{b}_{b'}) /
        \tau)}

    i.e. the cross-entropy of the :obj:`[B, B]` logits
    :math:`\cos(\mathbf{a}_b, \mathbf{b}_{b'}) / \tau` with the diagonal
    as the targets, computed stably by one fused log-softmax
    (:class:`_DiagonalCrossEntropy`; :math:`1/\tau` scales the
    :obj:`[B, d]` first view, not the logits).

    Args:
        view1 (torch.Tensor): :obj:`[B, d]` first view.
        view2 (torch.Tensor): :obj:`[B, d]` second view.
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.2`)
    """
    view1 = F.normalize(view1, dim=1) / temperature
    logits = view1 @ F.normalize(view2, dim=1).t()
    out = _DiagonalCrossEntropy.apply(logits)
    assert isinstance(out, Tensor)
    return out


class _DiagonalCrossEntropy(torch.autograd.Function):
    r"""The mean cross-entropy of the rows of square logits
    :math:`\mathbf{L}` with the diagonal as the targets, and its gradient,

    .. math::
        \ell = -\frac{1}{B} \sum_{b=1}^{B} \log
        \operatorname{softmax}(\mathbf{l}_b)_b, \qquad
        \frac{\partial \ell}{\partial \mathbf{L}} = \frac{1}{B} \left(
        \operatorname{softmax}(\mathbf{L}) - \mathbf{I} \right)

    the value of :func:`torch.nn.functional.cross_entropy` with targets
    :obj:`arange(B)`; the backward pass works in place on the saved
    log-softmax, without the zero-filled :obj:`[B, B]` target gradient of
    :obj:`cross_entropy`, about 1.6x faster on CPU.  Not twice
    differentiable."""
    @staticmethod
    def forward(ctx: Any, logits: Tensor) -> Tensor:  # type: ignore[override]
        log_prob = torch.log_softmax(logits, dim=1)
        ctx.save_for_backward(log_prob)
        return -log_prob.diagonal().mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tensor:
        (log_prob, ) = ctx.saved_tensors
        grad = log_prob.exp()
        grad.diagonal().sub_(1.0)
        return grad.mul_(grad_outputs[0] / log_prob.size(0))


class SOIL(Recommender):
    r"""SOIL of "SOIL: Contrastive Second-Order Interest Learning for
    Multimodal Recommendation" (Su et al., MM'24), as its official code
    (`TL-UESTC/SOIL <https://github.com/TL-UESTC/SOIL>`_,
    :obj:`models/soil.py`) computes it, for any number :math:`M` of item modalities.

    **Graphs, built once at construction** (under :func:`torch.no_grad`,
    sparse and in blocks, on the device of the inputs, from the INITIAL
    features and the TRAINING interactions only):

    * per modality :math:`m`, the item graph :math:`\hat{\mathbf{S}}^{m} =
      \hat{\mathbf{M}}^{m} + \hat{\mathbf{K}}^{m}`, the sum (not
      renormalised) of the interest-aware graph
      (:func:`interest_item_graph`, :obj:`knn_i` items per user) and the
      weighted similarity k-NN graph (:func:`similarity_knn_graph`,
      :obj:`knn_k` neighbours), each normalised on its own;
    * the interaction graph augmented with the second-order edges
      (:func:`second_order_edges`, :obj:`knn_a` per user), at weight
      :math:`\beta` (:obj:`second_order_weight`, the official
      :math:`1/2`), and :math:`\mathbf{R}'`, its user-item block:

      .. math::
          \tilde{\mathbf{A}}' = \tilde{\mathbf{A}} + \beta\,
          \mathbf{D}_X^{-1/2} \begin{pmatrix} \mathbf{0} & \mathbf{X} \\
          \mathbf{X}^{\top} & \mathbf{0} \end{pmatrix} \mathbf{D}_X^{-1/2},
          \qquad \mathbf{R}' = \tilde{\mathbf{A}}'_{\mathcal{U},
          \mathcal{I}}

    **Forward, at every training step and every evaluation** (the whole
    graph, as the official code): with ID embeddings
    :math:`\mathbf{E}_U, \mathbf{E}_I` and features :math:`\mathbf{F}^{m}`,

    .. math::
        \mathbf{C} = \frac{1}{L+1} \sum_{l=0}^{L} \tilde{\mathbf{A}}'^{\,l}
        \begin{bmatrix} \mathbf{E}_U \\ \mathbf{E}_I \end{bmatrix}, \qquad
        \mathbf{G}^{m} = \mathbf{E}_I \odot \sigma\!\left(\mathbf{W}^{m}_g
        (\mathbf{W}^{m} \mathbf{F}^{m} + \mathbf{b}^{m}) +
        \mathbf{b}^{m}_g\right)

    .. math::
        \mathbf{H}^{m}_I = (\hat{\mathbf{S}}^{m})^{L_i} \mathbf{G}^{m},
        \qquad \mathbf{H}^{m}_U = \mathbf{R}' \mathbf{H}^{m}_I, \qquad
        \alpha^{m} = \operatorname{softmax}_m\, \mathbf{q}^{\top}
        \tanh(\mathbf{W}_q \mathbf{h}^{m} + \mathbf{b}_q)

    .. math::
        \mathbf{h}^{c} = \sum_m \alpha^{m} \mathbf{h}^{m}, \qquad
        \mathbf{s} = \frac{1}{M+1} \Big(\mathbf{h}^{c} + \sum_m
        (\mathbf{h}^{m} - \mathbf{h}^{c})\Big), \qquad \mathbf{h} =
        \mathbf{c} + \mathbf{s}

    per user and item row (for two modalities :math:`\mathbf{s} =
    (\mathbf{h}^{1} + \mathbf{h}^{2} - \mathbf{h}^{c}) / 3`, the official
    side embedding), and :math:`\hat{y}_{ui} = \mathbf{h}_u^{\top}
    \mathbf{h}_i`.

    **Loss** (official L272-296), for a batch of triples :math:`(u, i,
    j)`, with :func:`info_nce_loss` at temperature :math:`\tau = 0.2`:

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \lambda_1 \left[
        \mathcal{L}_{\mathrm{NCE}}(\mathbf{s}_i, \mathbf{c}_i) +
        \mathcal{L}_{\mathrm{NCE}}(\mathbf{s}_u, \mathbf{c}_u) \right] +
        \lambda_2 \left[ \mathcal{L}_{\mathrm{NCE}}(\mathbf{h}_u,
        \mathbf{c}_i) + \mathcal{L}_{\mathrm{NCE}}(\mathbf{h}_u,
        \mathbf{s}_i) \right]

    (:math:`\lambda_1` = :obj:`view_cl_weight`, official :obj:`cl_loss`;
    :math:`\lambda_2` = :obj:`user_item_cl_weight`, official
    :obj:`cl_loss2`); there is no L2 term (the official code reads
    :obj:`reg_weight` and :obj:`tau` but uses neither).

    **The item-graph plug.** Given :obj:`item_edge_index` (e.g. MLLMRec's
    refined graph, :class:`~mllmrec_pyg.transforms.RefineItemGraph`), that
    one graph REPLACES the similarity k-NN term :math:`\hat{\mathbf{K}}^{m}`
    in the item graph of EVERY modality, :math:`\hat{\mathbf{S}}^{m} =
    \hat{\mathbf{M}}^{m} + \hat{\mathbf{S}}_{\text{given}}`, and
    :obj:`knn_k` is unused.  The interest-aware term (drop it with
    :obj:`knn_i=0`) and the second-order edges are still built from the
    modality features.

    **Deviations from the official code.** The graphs are sparse and built
    in blocks with no loop over users (memory :math:`O(\text{block} + E
    k_i + U k_a + N k_k)`, not :math:`O(N^2)`); any number of modalities
    (the official code needs exactly image and text); exactly :obj:`knn_a`
    new items per user (the official :obj:`topk(|I_u| + knn_a)` adds more
    when some of the user's own items rank below the cut); ties go to the
    lower item index; a zero feature row has similarity :obj:`0` and a
    degree :math:`\le 0` a normalisation factor :obj:`0` (the official code
    produces :obj:`NaN`); no hard-coded device.

    **Computation** (none of it changes the model): the products with the
    constant graphs run as fused weighted embedding-bag sums over CSR
    arrays of each graph and of its transpose (for the backward pass),
    built once at the first forward pass on a device, and the layer mean of
    :math:`\mathbf{C}` is one autograd node (:mod:`mllmrec_pyg.nn._spmm`;
    sums may differ from a sparse product in float rounding);
    the attention and :math:`\mathbf{h} = \mathbf{c} + \mathbf{s}` are
    computed for the batch rows only in :meth:`loss`; each InfoNCE term is one fused log-softmax
    with an in-place backward pass; with one modality the attention query
    is skipped (:math:`\alpha = 1`, it has no effect and a zero gradient,
    so its parameters get none).

    ID embeddings are Xavier-uniform initialised, the feature tables start
    from the features and are trained (:obj:`freeze_features=False`, as the
    MGCN code SOIL builds on), the :class:`~torch.nn.Linear` layers keep
    PyTorch's initialisation.  The official schedule (Adam, lr
    :math:`10^{-3}`, step decay 0.96 every 50 epochs, early stopping after
    10 epochs) belongs to the trainer.

    Args:
        num_users (int): The number of users.
        edge_index (torch.Tensor): :obj:`[2, E_train]` TRAINING user -> item
            interactions (:func:`mllmrec_pyg.data.train_edge_index`).
        features (Mapping[str, torch.Tensor]): The modalities, name ->
            :obj:`[num_items, F_m]` features (at least one).
        item_edge_index (torch.Tensor, optional): :obj:`[2, E]` entries
            :math:`(i, j)` of an item graph in matrix coordinates (item
            :obj:`item_edge_index[0]` receives from :obj:`[1]`) replacing
            the similarity k-NN graph of every modality (see above).
            (default: :obj:`None`)
        item_edge_weight (torch.Tensor, optional): :obj:`[E]` its values,
            taken as given (already normalised); :obj:`None` normalises the
            binary graph with its row sums. (default: :obj:`None`)
        item_graph (str, optional): :obj:`"own"` (the k-NN graph, unless
            :obj:`item_edge_index` is given) or :obj:`"data"`
            (:meth:`from_data` reads :obj:`data['item', 'similar', 'item']`
            and passes it as :obj:`item_edge_index`). (default:
            :obj:`"own"`)
        embedding_dim (int, optional): Embedding size :math:`d`.
            (default: :obj:`64`)
        num_ui_layers (int, optional): LightGCN layers :math:`L` over
            :math:`\tilde{\mathbf{A}}'` (official :obj:`n_ui_layers`).
            (default: :obj:`2`)
        num_item_layers (int, optional): Layers :math:`L_i` over the item
            graphs (official :obj:`n_layers`). (default: :obj:`1`)
        knn_k (int, optional): Neighbours of the similarity k-NN graph.
            (default: :obj:`10`)
        knn_i (int, optional): Items selected per user for the
            interest-aware graph; :obj:`0` drops it. The official settings:
            Baby 10, Sports 5, Clothing 5 (:attr:`DATASET_SETTINGS`).
            (default: :obj:`10`)
        knn_a (int, optional): Second-order items per user; :obj:`0` adds
            none. Baby 2, Sports 6, Clothing 3. (default: :obj:`2`)
        view_cl_weight (float, optional): :math:`\lambda_1` (official
            :obj:`cl_loss`, grid :attr:`GRID`). (default: :obj:`0.1`)
        user_item_cl_weight (float, optional): :math:`\lambda_2` (official
            :obj:`cl_loss2`). (default: :obj:`0.01`; with :obj:`0.1`, the
            best Sports run of the official logs)
        temperature (float, optional): :math:`\tau` of both InfoNCE terms
            (hard-coded in the official code). (default: :obj:`0.2`)
        second_order_weight (float, optional): :math:`\beta`.
            (default: :obj:`0.5`)
        freeze_features (bool, optional): Keep the feature tables fixed.
            (default: :obj:`False`)
    """
    #: The official grid (both weights searched jointly).
    GRID: Dict[str, List[Any]] = {
        'view_cl_weight': [0.001, 0.01, 0.1],
        'user_item_cl_weight': [0.001, 0.01, 0.1],
    }
    #: The InfoNCE terms use the other rows of the batch as negatives: a
    #: batch cannot be split across ranks (see :class:`~mllmrec_pyg.train.Trainer`).
    loss_couples_batch = True

    #: The official per-dataset :obj:`knn_i` / :obj:`knn_a`.
    DATASET_SETTINGS: Dict[str, Dict[str, int]] = {
        'baby': {'knn_i': 10, 'knn_a': 2},
        'sports': {'knn_i': 5, 'knn_a': 6},
        'clothing': {'knn_i': 5, 'knn_a': 3},
    }

    ui_adj: Tensor
    ui_weight: Tensor
    iu_adj: Tensor
    iu_weight: Tensor

    def __init__(
        self,
        num_users: int,
        edge_index: Tensor,
        features: Mapping[str, Tensor],
        item_edge_index: Tensor | None = None,
        item_edge_weight: Tensor | None = None,
        *,
        item_graph: str = 'own',
        embedding_dim: int = 64,
        num_ui_layers: int = 2,
        num_item_layers: int = 1,
        knn_k: int = 10,
        knn_i: int = 10,
        knn_a: int = 2,
        view_cl_weight: float = 0.1,
        user_item_cl_weight: float = 0.01,
        temperature: float = 0.2,
        second_order_weight: float = 0.5,
        freeze_features: bool = False,
    ):
        super().__init__()
        feats = self._check_features(features)
        self._check_options(item_graph, item_edge_index, item_edge_weight,
                            num_ui_layers=num_ui_layers,
                            num_item_layers=num_item_layers, knn_k=knn_k,
                            knn_i=knn_i, knn_a=knn_a)
        self.modalities = list(features)
        self.num_users = num_users
        self.num_items = feats[0].size(0)
        self.embedding_dim = embedding_dim
        self.num_ui_layers = num_ui_layers
        self.num_item_layers = num_item_layers
        self.knn_k, self.knn_i, self.knn_a = knn_k, knn_i, knn_a
        self.view_cl_weight = view_cl_weight
        self.user_item_cl_weight = user_item_cl_weight
        self.temperature = temperature
        self.second_order_weight = second_order_weight
        self.freeze_features = freeze_features
        self.item_graph = ('given' if item_edge_index is not None
                           and item_graph == 'own' else item_graph)

        self.user_embedding = Parameter(torch.empty(num_users, embedding_dim))
        self.item_embedding = Parameter(torch.empty(self.num_items,
                                                    embedding_dim))
        self.features = ParameterList([
            Parameter(f.detach().float().clone(),
                      requires_grad=not freeze_features) for f in feats])
        self.projections = ModuleList(
            [Linear(f.size(1), embedding_dim) for f in feats])
        self.gates = ModuleList([
            Sequential(Linear(embedding_dim, embedding_dim), torch.nn.Sigmoid())
            for _ in feats])
        self.query = Sequential(Linear(embedding_dim, embedding_dim),
                                torch.nn.Tanh(),
                                Linear(embedding_dim, 1, bias=False))
        self.conv = LightGCNConv()
        self._graph_cache: Tuple[Tuple[Tensor | None, ...], _Graphs] | None = None

        with torch.no_grad():
            edge_index = _unique_interactions(edge_index, num_users,
                                              self.num_items)
            self._build_item_graphs(edge_index, feats, item_edge_index,
                                    item_edge_weight)
            self._build_user_item_graph(edge_index, feats)
        self.reset_parameters()

    @staticmethod
    def _check_features(features: Mapping[str, Tensor]) -> List[Tensor]:
        feats = list(features.values())
        if len(feats) == 0:
            raise ValueError("SOIL needs at least one item modality "
                             "('features' is empty)")
        for name, f in features.items():
            if f.dim() != 2:
                raise ValueError(f"Modality '{name}' must be [num_items, F] "
                                 f"(got shape {list(f.shape)})")
            if f.size(0) != feats[0].size(0):
                raise ValueError(f"Modality '{name}' has {f.size(0)} rows, "
                                 f"'{next(iter(features))}' "
                                 f"{feats[0].size(0)}: one row per item")
        return feats

    @staticmethod
    def _check_options(item_graph: str, item_edge_index: Tensor | None,
                       item_edge_weight: Tensor | None,
                       **counts: int) -> None:
        if item_graph not in ('own', 'data'):
            raise ValueError(f"Unknown item_graph '{item_graph}' (expected "
                             f"'own' or 'data')")
        if item_graph == 'data' and item_edge_index is None:
            raise ValueError("item_graph='data' is read by SOIL.from_data; "
                             "to the constructor pass 'item_edge_index'")
        if item_edge_weight is not None and item_edge_index is None:
            raise ValueError("'item_edge_weight' given without "
                             "'item_edge_index'")
        for name, value in counts.items():
            if value < 0:
                raise ValueError(f"'{name}' must be >= 0 (got {value})")

    def _build_item_graphs(self, edge_index: Tensor, feats: List[Tensor],
                           item_edge_index: Tensor | None,
                           item_edge_weight: Tensor | None) -> None:
        r"""Registers :math:`\hat{\mathbf{S}}^{m}` of every modality."""
        num_items = self.num_items
        given = None
        if item_edge_index is not None:
            index = item_edge_index.long()
            if item_edge_weight is None:
                weight = torch.ones(index.size(1), device=index.device)
                weight = _normalize_by_row_sums(index, weight, num_items)
            else:
                weight = item_edge_weight.detach().float()
            given = (index, weight)
        for m, x in enumerate(feats):
            parts = [similarity_knn_graph(x, self.knn_k)
                     if given is None else given]
            if self.knn_i > 0:
                parts.append(interest_item_graph(edge_index, x,
                                                 self.num_users, self.knn_i))
            index = torch.cat([p[0].to(x.device) for p in parts], dim=1)
            weight = torch.cat([p[1].to(x.device) for p in parts])
            index, weight = coalesce(index, weight, num_items, reduce='sum')
            # Matrix coordinates (row receives) -> message flow col -> row.
            adj, adj_weight = edge_index_adjacency(index.flip(0), weight,
                                                   num_items)
            self.register_buffer(f'item_adj_{m}', adj, persistent=False)
            self.register_buffer(f'item_weight_{m}', adj_weight,
                                 persistent=False)

    def _build_user_item_graph(self, edge_index: Tensor,
                               feats: List[Tensor]) -> None:
        r"""Registers :math:`\tilde{\mathbf{A}}'` and its item -> user
        part :math:`\mathbf{R}'`."""
        num_users, num_nodes = self.num_users, self.num_users + self.num_items
        index, weight = bipartite_edges(edge_index, num_users, self.num_items)
        if self.knn_a > 0:
            extra, extra_weight = second_order_edges(edge_index, feats,
                                                     num_users, self.knn_a)
            index = torch.cat([index, extra.to(index.device)], dim=1)
            weight = torch.cat([weight, self.second_order_weight
                                * extra_weight.to(weight.device)])
            index, weight = coalesce(index, weight, num_nodes, reduce='sum')
        adj, adj_weight = edge_index_adjacency(index, weight, num_nodes)
        self.register_buffer('ui_adj', adj, persistent=False)
        self.register_buffer('ui_weight', adj_weight, persistent=False)
        # The graph is symmetric: its item -> user edges carry R'.
        to_user = (index[0] >= num_users) & (index[1] < num_users)
        adj, adj_weight = edge_index_adjacency(index[:, to_user],
                                               weight[to_user], num_nodes)
        self.register_buffer('iu_adj', adj, persistent=False)
        self.register_buffer('iu_weight', adj_weight, persistent=False)

    def reset_parameters(self) -> None:
        r"""Resets the ID embeddings (Xavier-uniform) and the layers
        (PyTorch's initialisation); the feature tables are kept."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_embedding)
        for module in self.modules():
            if isinstance(module, Linear):
                module.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> SOIL:
        r"""Builds the model from :obj:`data`: every modality of
        :data:`SOIL_MODALITIES` present on :obj:`data['item']`
        (:obj:`image_feat`, :obj:`text_feat`, :obj:`audio_feat`, :obj:`x`),
        the TRAINING interactions
        (:func:`~mllmrec_pyg.data.train_edge_index`) and, with
        :obj:`item_graph="data"`, the item graph :obj:`data['item',
        'similar', 'item']` (:obj:`edge_index`, optional
        :obj:`edge_weight`) in place of the similarity k-NN graphs.

        Args:
            data (torch_geometric.data.HeteroData): The dataset.
            **kwargs (optional): Other arguments of :class:`SOIL`.
        """
        store = data['item']
        features = {name: getattr(store, name) for name in SOIL_MODALITIES
                    if getattr(store, name, None) is not None}
        if not features:
            raise ValueError("SOIL needs item features: data['item'] has "
                             "none of " + ', '.join(SOIL_MODALITIES)
                             + "; encode the item text or images first")
        for name, f in features.items():
            if f.size(0) != store.num_nodes:
                raise ValueError(f"data['item'].{name} has {f.size(0)} rows "
                                 f"but there are {store.num_nodes} items")
        if kwargs.get('item_graph', 'own') == 'data':
            if 'item_edge_index' in kwargs:
                raise ValueError("item_graph='data' reads the item graph "
                                 "from data: do not also pass "
                                 "'item_edge_index'")
            if ITEM_SIMILAR not in data.edge_types:
                raise ValueError(
                    "item_graph='data' needs data['item', 'similar', "
                    "'item']: apply mllmrec_pyg.transforms.RefineItemGraph "
                    "first, or pass item_graph='own'")
            graph = data[ITEM_SIMILAR]
            kwargs['item_edge_index'] = graph.edge_index
            kwargs['item_edge_weight'] = getattr(graph, 'edge_weight', None)
        return cls(data['user'].num_nodes, train_edge_index(data), features,
                   **kwargs)

    def _graphs(self) -> _Graphs:
        r"""The :func:`~mllmrec_pyg.nn._spmm._flow_csr` arrays (both ways)
        of the constant graphs: :math:`\tilde{\mathbf{A}}'`, every
        :math:`\hat{\mathbf{S}}^{m}` and the :obj:`[num_users, num_items]`
        block :math:`\mathbf{R}'`.  Built at the first call and again only
        when the buffers were replaced (e.g. by :meth:`torch.nn.Module.to`
        to another device)."""
        buffers = tuple(self._graph_buffers())
        cached = self._graph_cache
        if cached is not None and len(cached[0]) == len(buffers) and all(
                a is b for a, b in zip(cached[0], buffers, strict=True)):
            return cached[1]
        num_users, num_items = self.num_users, self.num_items
        ui = _flow_csr(_plain(self.ui_adj), self.ui_weight,
                       num_users + num_items)
        items = [_flow_csr(_plain(getattr(self, f'item_adj_{m}')),
                           getattr(self, f'item_weight_{m}'), num_items)
                 for m in range(len(self.features))]
        # R' as a bipartite graph: item sources (shifted to 0..N-1) -> user
        # targets, so that H_U = R' H_I needs no zero user rows.
        index = _plain(self.iu_adj)
        iu = _flow_csr(torch.stack([index[0] - num_users, index[1]]),
                       self.iu_weight, (num_items, num_users))
        graphs: _Graphs = (ui, items, iu)
        self._graph_cache = (buffers, graphs)
        return graphs

    def _graph_buffers(self) -> List[Tensor | None]:
        names = ['ui_adj', 'ui_weight', 'iu_adj', 'iu_weight']
        for m in range(len(self.features)):
            names += [f'item_adj_{m}', f'item_weight_{m}']
        return [getattr(self, name) for name in names]

    def propagate(self) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Returns the final :math:`\mathbf{h}`, side :math:`\mathbf{s}`
        and content :math:`\mathbf{c}` representations, each
        :obj:`[num_users + num_items, d]` (users first), with gradients.

        The products run over CSR arrays of the constant graphs built once
        (:meth:`_graphs`) as fused embedding-bag sums, the layer mean of
        :math:`\mathbf{C}` in one autograd node
        (:mod:`mllmrec_pyg.nn._spmm`); the values equal those of
        :class:`~mllmrec_pyg.nn.conv.LightGCNConv` up to float rounding.
        With one modality, :math:`\alpha = 1` and :math:`\mathbf{s} =
        \mathbf{h}^{1} / 2` exactly, so the attention query is not
        evaluated (it has no effect and no gradient)."""
        blocks, views = self._blocks()
        content = torch.cat(blocks, dim=0)
        side = self._side([torch.cat(view, dim=0) for view in views])
        return content + side, side, content

    def _blocks(self) -> Tuple[Tuple[Tensor, Tensor],
                               List[Tuple[Tensor, Tensor]]]:
        r"""The content :math:`\mathbf{C}` and every modality's view
        :math:`\mathbf{h}^{m}`, each as its :obj:`(users, items)` blocks."""
        ui, item_graphs, iu = self._graphs()
        ego = torch.cat([self.user_embedding, self.item_embedding], dim=0)
        content = _layer_mean(ego, ui, self.num_ui_layers, self.num_users)
        views = []
        for feat, projection, gate, graph in zip(
                self.features, self.projections, self.gates, item_graphs,
                strict=True):
            h = self.item_embedding * gate(projection(feat))
            for _ in range(self.num_item_layers):
                h = _spmm(h, graph)
            views.append((_spmm(h, iu), h))
        return content, views

    def _side(self, views: List[Tensor]) -> Tensor:
        r"""The side representation :math:`\mathbf{s}` of the rows of the
        views :math:`\mathbf{h}^{m}` (row by row: any subset of rows)."""
        if len(views) == 1:
            # softmax over one modality is exactly 1: h^c = h^1 and
            # s = (h^1 + 0) / 2, bit for bit.
            return views[0] / 2
        stacked = torch.stack(views, dim=0)
        alpha = torch.softmax(self.query(stacked), dim=0)
        common = (alpha * stacked).sum(dim=0)
        return (common + (stacked - common).sum(dim=0)) / (len(views) + 1)

    def embed(self) -> Tuple[Tensor, Tensor]:
        final, _, _ = self.propagate()
        return final[:self.num_users], final[self.num_users:]

    def loss_terms(self, user: Tensor, pos_item: Tensor,
                   neg_item: Tensor) -> Dict[str, Tensor]:
        r"""Returns the unweighted terms of :meth:`loss`: :obj:`"bpr"`,
        :obj:`"view_cl"` (:math:`\mathcal{L}_{\mathrm{NCE}}(\mathbf{s}_i,
        \mathbf{c}_i) + \mathcal{L}_{\mathrm{NCE}}(\mathbf{s}_u,
        \mathbf{c}_u)`) and :obj:`"user_item_cl"`
        (:math:`\mathcal{L}_{\mathrm{NCE}}(\mathbf{h}_u, \mathbf{c}_i) +
        \mathcal{L}_{\mathrm{NCE}}(\mathbf{h}_u, \mathbf{s}_i)`).

        Args:
            user (torch.Tensor): User indices, shape :obj:`[B]`.
            pos_item (torch.Tensor): Positive items, shape :obj:`[B]`.
            neg_item (torch.Tensor): Negative items, shape :obj:`[B]`.
        """
        content_blocks, views = self._blocks()
        # The batch rows only: the attention and h = c + s are computed for
        # them, not for every node (both work row by row).
        size = user.numel()
        items = torch.cat([pos_item, neg_item])

        def rows(blocks: Tuple[Tensor, Tensor]) -> Tensor:
            return torch.cat([blocks[0][user], blocks[1][items]], dim=0)

        content = rows(content_blocks)
        side = self._side([rows(view) for view in views])
        final = content + side
        u, pos, neg = final[:size], final[size:2 * size], final[2 * size:]
        side_u, side_i = side[:size], side[size:2 * size]
        content_u, content_i = content[:size], content[size:2 * size]
        tau = self.temperature
        return {
            'bpr': bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1)),
            'view_cl': (info_nce_loss(side_i, content_i, tau)
                        + info_nce_loss(side_u, content_u, tau)),
            'user_item_cl': (info_nce_loss(u, content_i, tau)
                             + info_nce_loss(u, side_i, tau)),
        }

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> Tensor:
        terms = self.loss_terms(user, pos_item, neg_item)
        return (terms['bpr'] + self.view_cl_weight * terms['view_cl']
                + self.user_item_cl_weight * terms['user_item_cl'])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, '
                f'modalities=[{", ".join(self.modalities)}], '
                f'embedding_dim={self.embedding_dim}, '
                f'num_ui_layers={self.num_ui_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'knn_k={self.knn_k}, knn_i={self.knn_i}, '
                f'knn_a={self.knn_a}, item_graph={self.item_graph!r}, '
                f'view_cl_weight={self.view_cl_weight}, '
                f'user_item_cl_weight={self.user_item_cl_weight})')
