r"""Counts that describe a dataset."""
from __future__ import annotations

from typing import Dict

from torch_geometric.data import HeteroData

from .interactions import INTERACTS


def dataset_stats(data: HeteroData) -> Dict[str, int]:
    r"""Returns :obj:`users`, :obj:`items`, :obj:`interactions` and the
    :obj:`train` / :obj:`val` / :obj:`test` edge counts of :obj:`data`."""
    store = data[INTERACTS]
    return {
        'users': int(data['user'].num_nodes),
        'items': int(data['item'].num_nodes),
        'interactions': int(store.edge_index.size(1)),
        'train': int(store.train_mask.sum()),
        'val': int(store.val_mask.sum()),
        'test': int(store.test_mask.sum()),
    }
