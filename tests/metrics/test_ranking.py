import math

import pytest
import torch

from mllmrec_pyg.metrics import (
    hit_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# User A holds 2 items and finds them at ranks 1 and 3; user B holds 4 and
# finds one at rank 2.
HITS = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
NUM_RELEVANT = torch.tensor([2, 4])


def _close(out, expected):
    assert out.dtype == torch.float64
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), atol=1e-12)


def test_recall_precision_hit():
    _close(recall_at_k(HITS, NUM_RELEVANT, 1), [1 / 2, 0.0])
    _close(recall_at_k(HITS, NUM_RELEVANT, 3), [1.0, 1 / 4])
    _close(precision_at_k(HITS, NUM_RELEVANT, 3), [2 / 3, 1 / 3])
    _close(precision_at_k(HITS, NUM_RELEVANT, 5), [2 / 5, 1 / 5])
    _close(hit_at_k(HITS, NUM_RELEVANT, 1), [1.0, 0.0])
    _close(hit_at_k(HITS, NUM_RELEVANT, 2), [1.0, 1.0])


def test_ndcg_ideal_over_min_relevant_and_k():
    # A: ideal DCG over min(2, 3) = 2 hits; B: over min(4, 3) = 3 hits.
    a = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    b = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    _close(ndcg_at_k(HITS, NUM_RELEVANT, 3), [a, b])
    # At K = 5, B's ideal DCG covers all 4 of its items.
    b5 = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5))
    _close(ndcg_at_k(HITS, NUM_RELEVANT, 5), [a, b5])
    _close(ndcg_at_k(HITS, NUM_RELEVANT, 1), [1.0, 0.0])


def test_map_normalised_by_min_relevant_and_k():
    # A: (P@1 + P@3) / min(2, K) = (1 + 2/3) / 2; B: P@2 / min(4, K).
    _close(map_at_k(HITS, NUM_RELEVANT, 3), [5 / 6, (1 / 2) / 3])
    _close(map_at_k(HITS, NUM_RELEVANT, 5), [5 / 6, (1 / 2) / 4])
    _close(map_at_k(HITS, NUM_RELEVANT, 1), [1.0, 0.0])


def test_ranking_metrics_keys_and_errors():
    out = ranking_metrics(HITS, NUM_RELEVANT, ks=(1, 3), metrics=('recall', 'hit'))
    assert list(out) == ['recall@1', 'recall@3', 'hit@1', 'hit@3']
    with pytest.raises(ValueError, match='Unknown ranking metric'):
        ranking_metrics(HITS, NUM_RELEVANT, ks=(1, ), metrics=('mrr', ))
    with pytest.raises(ValueError, match='outside the ranked lists'):
        recall_at_k(HITS, NUM_RELEVANT, 6)
    with pytest.raises(ValueError, match='at least one held-out item'):
        ranking_metrics(HITS, torch.tensor([2, 0]))
