from .dataset import DOMAINS, RecDataset, detect_format, load_dataset
from .interactions import (
    INTERACTS,
    REV_INTERACTS,
    FullHistoryLeakWarning,
    HistorySource,
    check_split_fingerprint,
    edge_time,
    history_edge_index,
    split_edge_index,
    split_fingerprint,
    split_mask,
    train_edge_index,
)
from .stats import dataset_stats
from .synthetic import SyntheticCatalog, synthetic_folder

__all__ = [
    'INTERACTS',
    'REV_INTERACTS',
    'FullHistoryLeakWarning',
    'HistorySource',
    'check_split_fingerprint',
    'edge_time',
    'history_edge_index',
    'split_edge_index',
    'split_fingerprint',
    'split_mask',
    'train_edge_index',
    'RecDataset',
    'load_dataset',
    'detect_format',
    'DOMAINS',
    'dataset_stats',
    'SyntheticCatalog',
    'synthetic_folder',
]
