r"""Graph transforms of MLLMRec: the refined item-item graph (Eq. 6-11)."""
from .candidates import CandidateCache
from .fuse_features import FuseFeatures, modality_weights_default
from .jaccard_cooccurrence import JaccardCoOccurrence
from .knn_recall import knn_recall
from .normalize_item_graph import NormalizeItemGraph
from .refine_item_graph import RefineItemGraph
from .threshold_knn import ThresholdKNN, similarity_quantiles

__all__ = [
    'ThresholdKNN',
    'JaccardCoOccurrence',
    'NormalizeItemGraph',
    'RefineItemGraph',
    'FuseFeatures',
    'CandidateCache',
    'knn_recall',
    'similarity_quantiles',
    'modality_weights_default',
]
