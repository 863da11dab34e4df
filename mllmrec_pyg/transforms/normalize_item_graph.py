from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import coalesce

from mllmrec_pyg.utils.sparse import sparse_adjacency

#: The degree conventions and the PyG message flow whose receiving node
#: they sum over: the row receives with "target_to_source" (row sums),
#: the column with "source_to_target" (column sums).
_FLOW = {'row': 'target_to_source', 'col': 'source_to_target'}


@functional_transform('normalize_item_graph')
class NormalizeItemGraph(BaseTransform):
    r"""Combines the k-NN and co-occurrence item graphs and normalises the
    result symmetrically, Eq. 10-11 of `"MLLMRec: Exploring the Potential of
    Multimodal Large Language Models in Recommender Systems"
    <https://arxiv.org/abs/2508.15304>`_
    (functional name: :obj:`normalize_item_graph`):

    .. math::
        \mathbf{S}^{*} = \tilde{\mathbf{S}} + \tilde{\mathbf{C}}, \qquad
        \hat{\mathbf{S}} = \mathbf{D}^{-1/2}\,\mathbf{S}^{*}\,
        \mathbf{D}^{-1/2}, \qquad D_{ii} = \sum_j S^{*}_{ij}

    An item pair selected by both graphs gets the sum of both weights.  The
    normalisation is PyG's :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm`
    with :obj:`add_self_loops=False` (Eq. 11 adds none) applied to the
    coalesced :math:`\mathbf{S}^{*}`: with :obj:`flow="target_to_source"`
    its degree is the row sum (:obj:`degree="row"`), with
    :obj:`flow="source_to_target"` the column sum (:obj:`degree="col"`),
    and it takes :math:`0^{-1/2}` as 0 like the reference.

    **Direction.** Every item graph here uses the coordinates of its matrix:
    :obj:`edge_index[0]` is the row :math:`i` (the item whose neighbours were
    selected), :obj:`edge_index[1]` the column :math:`j`.  One propagation
    step of the paper, :math:`\mathbf{e}'_i = \sum_j \hat{S}_{ij}
    \mathbf{e}_j`, therefore sends messages from :obj:`edge_index[1]` to
    :obj:`edge_index[0]`: use :obj:`flow="target_to_source"` in a
    :class:`~torch_geometric.nn.conv.MessagePassing` layer, or
    :obj:`edge_index.flip(0)` with the default flow.  The optional
    :obj:`adj_t` is this same matrix :math:`\hat{\mathbf{S}}` in CSR, which
    is exactly PyG's :obj:`adj_t` convention (row = receiving node), so
    :obj:`adj_t @ x` (or :obj:`spmm(adj_t, x)` in
    :obj:`message_and_aggregate`) is the propagation step.

    **Degrees.** :math:`\mathbf{S}^{*}` is not symmetric (k-NN selection is
    not mutual).  :obj:`degree="row"` takes :math:`D_{ii}` as the row sum,
    i.e. the total weight item :math:`i` receives; this is the reference
    implementation's convention (:obj:`rowsum` of the dense matrix) and the
    default.  :obj:`degree="col"` takes column sums (the weight item
    :math:`i` sends).  :obj:`symmetrize=True` first replaces
    :math:`\mathbf{S}^{*}` by :math:`\mathbf{S}^{*} + \mathbf{S}^{*\top}`,
    making :math:`\hat{\mathbf{S}}` symmetric so that direction no longer
    matters (then both degree conventions coincide).  Items without edges
    have degree 0 and stay isolated (:math:`0^{-1/2}` is taken as 0, as in
    the reference).

    On :class:`~torch_geometric.data.HeteroData` it reads
    :obj:`data[node_type, r, node_type]` for each relation :obj:`r` in
    :obj:`relations` and writes :obj:`data[node_type, out_relation,
    node_type].edge_index` / :obj:`.edge_weight` (coalesced: sorted by row,
    then column) and, with :obj:`sparse_adjacency=True`, :obj:`.adj_t`.  On
    :class:`~torch_geometric.data.Data` it normalises :obj:`data.edge_index`
    (with :obj:`data.edge_weight`, or unit weights) in place and writes
    :obj:`data.edge_weight` (and :obj:`data.adj_t`).

    Args:
        relations (Sequence[str], optional): The item-item relations summed
            into :math:`\mathbf{S}^{*}`. (default: :obj:`("knn",
            "cooccurs")`)
        out_relation (str, optional): The relation that receives
            :math:`\hat{\mathbf{S}}`. (default: :obj:`"similar"`)
        node_type (str, optional): The node type of the items.
            (default: :obj:`"item"`)
        degree (str, optional): :obj:`"row"` (row sums, the reference) or
            :obj:`"col"` (column sums). (default: :obj:`"row"`)
        symmetrize (bool, optional): If :obj:`True`, normalise
            :math:`\mathbf{S}^{*} + \mathbf{S}^{*\top}` instead.
            (default: :obj:`False`)
        sparse_adjacency (bool, optional): If :obj:`True`, also store
            :math:`\hat{\mathbf{S}}` as a :obj:`torch.sparse_csr` tensor
            :obj:`adj_t` for fused sparse propagation.
            (default: :obj:`False`)
    """
    def __init__(
        self,
        relations: Sequence[str] = ('knn', 'cooccurs'),
        out_relation: str = 'similar',
        node_type: str = 'item',
        degree: str = 'row',
        symmetrize: bool = False,
        sparse_adjacency: bool = False,
    ) -> None:
        if isinstance(relations, str) or len(relations) == 0:
            raise ValueError(f"NormalizeItemGraph: 'relations' must be a "
                             f"non-empty sequence of relation names (got "
                             f"{relations!r})")
        if degree not in _FLOW:
            raise ValueError(f"NormalizeItemGraph: 'degree' must be 'row' "
                             f"(the reference) or 'col' (got {degree!r})")
        self.relations = tuple(relations)
        self.out_relation = out_relation
        self.node_type = node_type
        self.degree = degree
        self.symmetrize = symmetrize
        self.sparse_adjacency = sparse_adjacency

    def _read(self, data: Union[Data, HeteroData],
              ) -> tuple[Tensor, Tensor, int]:
        if isinstance(data, HeteroData):
            if self.node_type not in data.node_types:
                raise ValueError(f"NormalizeItemGraph: the graph has no node "
                                 f"type '{self.node_type}'")
            num_nodes = data[self.node_type].num_nodes
            indices, weights = [], []
            for relation in self.relations:
                edge_type = (self.node_type, relation, self.node_type)
                if edge_type not in data.edge_types:
                    raise ValueError(
                        f"NormalizeItemGraph: {edge_type} is missing; run "
                        f"ThresholdKNN / JaccardCoOccurrence first (or use "
                        f"RefineItemGraph), or pass the relations present "
                        f"as 'relations'")
                store = data[edge_type]
                indices.append(store.edge_index)
                weights.append(self._weight(store.edge_index,
                                            getattr(store, 'edge_weight',
                                                    None)))
            dtype = functools.reduce(torch.promote_types,
                                     [w.dtype for w in weights])
            edge_index = torch.cat(indices, dim=1)
            edge_weight = torch.cat([w.to(dtype) for w in weights])
        else:
            if data.edge_index is None:
                raise ValueError("NormalizeItemGraph: data.edge_index is "
                                 "missing")
            num_nodes = data.num_nodes
            edge_index = data.edge_index
            edge_weight = self._weight(edge_index,
                                       getattr(data, 'edge_weight', None))
        if edge_weight.numel() > 0 and bool((edge_weight < 0).any()):
            raise ValueError("NormalizeItemGraph: negative edge weights have "
                             "no square-root degree normalisation")
        return edge_index, edge_weight, num_nodes

    @staticmethod
    def _weight(edge_index: Tensor, edge_weight: Optional[Tensor]) -> Tensor:
        if edge_weight is None:
            return torch.ones(edge_index.size(1), device=edge_index.device)
        return edge_weight

    def forward(
        self,
        data: Union[Data, HeteroData],
    ) -> Union[Data, HeteroData]:
        edge_index, edge_weight, num_nodes = self._read(data)
        if self.symmetrize:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
            edge_weight = torch.cat([edge_weight, edge_weight])
        edge_index, edge_weight = coalesce(edge_index, edge_weight, num_nodes,
                                           reduce='sum')
        assert edge_weight is not None
        # Eq. 11 is PyG's GCN normalisation without self-loops.
        edge_index, edge_weight = gcn_norm(edge_index, edge_weight, num_nodes,
                                           add_self_loops=False,
                                           flow=_FLOW[self.degree])
        assert edge_weight is not None

        if isinstance(data, HeteroData):
            store = data[self.node_type, self.out_relation, self.node_type]
        else:
            store = data
        store.edge_index = edge_index
        store.edge_weight = edge_weight
        if self.sparse_adjacency:
            # Matrix coordinates: row 0 receives, so the messages run along
            # edge_index.flip(0) and the CSR of S^ is its adj_t.
            store.adj_t = sparse_adjacency(edge_index.flip(0), edge_weight,
                                           num_nodes)
        return data

    def __repr__(self) -> str:
        args = []
        if self.relations != ('knn', 'cooccurs'):
            args.append(f'relations={self.relations}')
        args.append(f"degree='{self.degree}'")
        if self.symmetrize:
            args.append('symmetrize=True')
        if self.sparse_adjacency:
            args.append('sparse_adjacency=True')
        return f'{self.__class__.__name__}({", ".join(args)})'
