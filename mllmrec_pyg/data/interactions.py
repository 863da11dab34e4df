r"""Named access to the interaction edges of a recommendation
:class:`~torch_geometric.data.HeteroData`, with the leak guard.

Every stage that *learns* from interactions (the Jaccard co-occurrence graph,
the preference prompts, negative sampling, the user-item propagation graph)
must obtain them through :func:`train_edge_index`, which returns only the
edges whose ``train_mask`` is set.  Validation and test edges cannot reach it.
"""
from __future__ import annotations

from typing import Literal, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

#: The user -> item interaction relation of every dataset in this package.
INTERACTS: Tuple[str, str, str] = ('user', 'interacts', 'item')
#: Its reverse, named as :class:`torch_geometric.transforms.ToUndirected` does.
REV_INTERACTS: Tuple[str, str, str] = ('item', 'rev_interacts', 'user')

Split = Literal['train', 'val', 'test', 'all']
_MASKS = {'train': 'train_mask', 'val': 'val_mask', 'test': 'test_mask'}


def split_mask(data: HeteroData, split: Split) -> Tensor:
    r"""Returns the boolean mask over :obj:`('user', 'interacts', 'item')`
    edges that selects :obj:`split` (:obj:`"train"`, :obj:`"val"`,
    :obj:`"test"` or :obj:`"all"`)."""
    store = data[INTERACTS]
    if split == 'all':
        return torch.ones(store.edge_index.size(1), dtype=torch.bool,
                          device=store.edge_index.device)
    if split not in _MASKS:
        raise ValueError(f"Unknown split '{split}' (expected one of "
                         f"'train', 'val', 'test', 'all')")
    mask = getattr(store, _MASKS[split], None)
    if mask is None:
        raise ValueError(f"The interaction edges carry no '{_MASKS[split]}': "
                         f"the dataset was built without a split")
    return mask


def split_edge_index(data: HeteroData, split: Split) -> Tensor:
    r"""Returns the :obj:`[2, E_split]` user -> item edges of :obj:`split`
    (row 0: user index, row 1: item index)."""
    return data[INTERACTS].edge_index[:, split_mask(data, split)]


def train_edge_index(data: HeteroData) -> Tensor:
    r"""Returns the TRAINING user -> item interactions only, as a
    :obj:`[2, E_train]` tensor (row 0: user index, row 1: item index).

    This is the single accessor through which anything that learns from
    interactions must read them: no validation or test edge is returned.
    """
    return split_edge_index(data, 'train')


def edge_time(data: HeteroData, split: Split = 'all') -> Union[Tensor, None]:
    r"""Returns the per-edge timestamps of :obj:`split`, or :obj:`None` when
    the dataset has none."""
    time = getattr(data[INTERACTS], 'time', None)
    if time is None:
        return None
    return time[split_mask(data, split)]
