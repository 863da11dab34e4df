from .beyond_accuracy import catalogue_coverage, novelty
from .evaluator import EvaluationResult, Evaluator
from .ranking import (
    RANKING_METRICS,
    hit_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from .representation import (
    alignment,
    representation_summary,
    uniformity,
    user_item_uniformity,
)
from .significance import PairedTTest, paired_t_test

__all__ = [
    'Evaluator',
    'EvaluationResult',
    'PairedTTest',
    'RANKING_METRICS',
    'alignment',
    'catalogue_coverage',
    'hit_at_k',
    'map_at_k',
    'ndcg_at_k',
    'novelty',
    'paired_t_test',
    'precision_at_k',
    'ranking_metrics',
    'recall_at_k',
    'representation_summary',
    'uniformity',
    'user_item_uniformity',
]
