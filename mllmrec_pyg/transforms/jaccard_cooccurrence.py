from __future__ import annotations

from typing import Optional

import torch
from torch.distributed import ProcessGroup
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from mllmrec_pyg.data import INTERACTS, train_edge_index
from mllmrec_pyg.transforms._distributed import check_group
from mllmrec_pyg.transforms._jaccard import jaccard_topk
from mllmrec_pyg.transforms.candidates import CandidateCache


@functional_transform('jaccard_cooccurrence')
class JaccardCoOccurrence(BaseTransform):
    r"""Builds the weighted co-occurrence item-item graph of MLLMRec
    (Eq. 8-9 of `"MLLMRec: Exploring the Potential of Multimodal Large
    Language Models in Recommender Systems"
    <https://arxiv.org/abs/2508.15304>`_)
    (functional name: :obj:`jaccard_cooccurrence`).

    With :math:`\mathcal{U}_i` the users who interacted with item :math:`i`
    in the TRAINING split, each item keeps its top-:math:`k` other items by
    Jaccard similarity, weighted by it:

    .. math::
        J_{ij} = \frac{|\mathcal{U}_i \cap \mathcal{U}_j|}
        {|\mathcal{U}_i \cup \mathcal{U}_j|} \quad (i \neq j), \qquad
        \tilde{C}_{ij} = \begin{cases} J_{ij} & \text{if } j \in
        \operatorname{top-}\!k(J_{i,:}) \\ 0 & \text{otherwise} \end{cases}

    It reads the interactions only through
    :func:`mllmrec_pyg.data.train_edge_index` (the edges of
    :obj:`data['user', 'interacts', 'item']` whose :obj:`train_mask` is set),
    so validation and test interactions cannot leak into the graph, and
    writes :obj:`data['item', 'cooccurs', 'item'].edge_index` (row 0: the item
    :math:`i` whose neighbours were selected, row 1: neighbour :math:`j`) and
    :obj:`.edge_weight` (:math:`J_{ij}`, default float dtype), sorted by row,
    then weight descending, then column, on the device of the interactions.

    The intersection counts come from a sparse :math:`\mathbf{R}\mathbf{R}^
    {\top}` computed in blocks of items: nothing of size
    :obj:`items x items` or :obj:`items x users` is materialised.

    Defined behaviour at the edges:

    * The diagonal is excluded exactly.  (The reference code zeroes entries
      equal to 1 instead, which also removes twin items with identical
      audiences, :math:`J_{ij} = 1`, and, through its :math:`10^{-7}`
      smoothing, leaves a self-weight of 0.9999999 on items with a single
      user.)  Twin items keep their edge with weight 1 here.
    * Only pairs with at least one common user (:math:`J_{ij} > 0`) can be
      selected; an item with fewer such partners than :math:`k` gets fewer
      edges, and an item without training users gets none.
    * Ties in :math:`J_{ij}` are broken by the lower item index :math:`j`.
    * A user listed twice for one item counts once (audiences are sets).
    * :obj:`k=0` disables the graph (an empty edge set: the "w/o Jaccard"
      ablation) without reading the interactions.

    Args:
        k (int, optional): The number :math:`K_c` of co-occurring items
            kept per item, or :obj:`0` to disable. The paper uses 10 (Baby,
            Sports) and 15 (Clothing). (default: :obj:`10`)
        candidates (CandidateCache, optional): Remembers the top-:math:`k`
            lists by the content of the training edges (computed once for
            the largest :math:`k` of a sweep and cut per row).
            (default: :obj:`None`, compute on every call)
        progress (bool, optional): A progress bar over the items, shown on
            a terminal only. (default: :obj:`False`)
        group (torch.distributed.ProcessGroup, optional): Shares the
            computation out between the ranks of a process group (e.g.
            :obj:`torch.distributed.group.WORLD`): every rank must call the
            transform on the same data, computes the rows of its contiguous
            block of items from all the training edges, and ends with the
            full graph, equal to the one-process one exactly.
            (default: :obj:`None`, one process)
    """
    def __init__(self, k: int = 10,
                 candidates: Optional[CandidateCache] = None,
                 progress: bool = False,
                 group: Optional[ProcessGroup] = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"JaccardCoOccurrence: 'k' must be a "
                             f"non-negative integer, 0 disabling the graph "
                             f"(got {k!r})")
        check_group(group, 'JaccardCoOccurrence')
        self.k = k
        self.candidates = candidates
        self.progress = progress
        self.group = group

    def forward(self, data: HeteroData) -> HeteroData:
        if not isinstance(data, HeteroData):
            raise ValueError(
                "JaccardCoOccurrence needs a HeteroData with 'user' and "
                "'item' nodes and ('user', 'interacts', 'item') edges; a "
                f"homogeneous {type(data).__name__} has no audiences")
        if 'item' not in data.node_types:
            raise ValueError("JaccardCoOccurrence: the graph has no 'item' "
                             "node type")
        store = data['item', 'cooccurs', 'item']
        num_items = data['item'].num_nodes
        if self.k == 0:
            device = None
            if INTERACTS in data.edge_types:
                device = data[INTERACTS].edge_index.device
            store.edge_index = torch.empty(2, 0, dtype=torch.long,
                                           device=device)
            store.edge_weight = torch.empty(0, device=device)
            return data

        if INTERACTS not in data.edge_types:
            raise ValueError(f"JaccardCoOccurrence: the graph has no "
                             f"{INTERACTS} edges to compute audiences from")
        edge_index = train_edge_index(data)
        if edge_index.numel() == 0:
            raise ValueError(
                "JaccardCoOccurrence: no training interactions (train_mask "
                "of ('user', 'interacts', 'item') selects no edge); check the "
                "split, or pass k=0 to build the graph without co-occurrence")
        num_users = data['user'].num_nodes
        if int(edge_index.min()) < 0 or int(edge_index[0].max()) >= num_users \
                or int(edge_index[1].max()) >= num_items:
            raise ValueError(
                f"JaccardCoOccurrence: interaction indices out of range "
                f"({num_users} users, {num_items} items); the edge_index "
                f"does not match data['user'/'item'].num_nodes")

        if self.candidates is None:
            row, col, weight = jaccard_topk(edge_index, num_users, num_items,
                                            self.k, progress=self.progress,
                                            group=self.group)
        else:
            row, col, weight = self.candidates.jaccard(
                edge_index, num_users, num_items, self.k,
                lambda k: jaccard_topk(edge_index, num_users, num_items, k,
                                       progress=self.progress,
                                       group=self.group))
        store.edge_index = torch.stack([row, col], dim=0)
        store.edge_weight = weight.to(torch.get_default_dtype())
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(k={self.k})'
