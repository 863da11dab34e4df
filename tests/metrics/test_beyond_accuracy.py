import math

import torch

from mllmrec_pyg.metrics import catalogue_coverage, novelty


def test_catalogue_coverage():
    topk = torch.tensor([[0, 1, 2], [0, 3, 4]])
    assert catalogue_coverage(topk, num_items=10, k=1) == 0.1
    assert catalogue_coverage(topk, num_items=10, k=2) == 0.3
    assert catalogue_coverage(topk, num_items=10, k=3) == 0.5
    assert catalogue_coverage(topk[:0], num_items=10, k=3) == 0.0


def test_novelty_is_mean_self_information():
    topk = torch.tensor([[0, 1], [2, 0]])
    popularity = torch.tensor([4, 2, 0])  # item 2 never seen: counted once
    out = novelty(topk, popularity, num_users=8, k=2)
    expected = [(-math.log2(4 / 8) - math.log2(2 / 8)) / 2,
                (-math.log2(1 / 8) - math.log2(4 / 8)) / 2]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64))
    assert torch.allclose(novelty(topk, popularity, 8, 1),
                          torch.tensor([1.0, 3.0], dtype=torch.float64))
