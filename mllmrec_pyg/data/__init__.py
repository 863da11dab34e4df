from .interactions import (
    INTERACTS,
    REV_INTERACTS,
    edge_time,
    split_edge_index,
    split_mask,
    train_edge_index,
)

__all__ = [
    'INTERACTS',
    'REV_INTERACTS',
    'edge_time',
    'split_edge_index',
    'split_mask',
    'train_edge_index',
]
