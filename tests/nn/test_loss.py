import math

import pytest
import torch

from mllmrec_pyg.nn.loss import bpr_loss, embedding_norm_loss


def test_bpr_loss_exact():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([0.0, 0.0])
    # -(ln sigma(2) + ln sigma(0)) / 2
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_embedding_norm_loss_exact():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # norm 5
    b = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # norm 1
    # MMRec's EmbLoss: unsquared Frobenius norms, divided by the batch size.
    assert embedding_norm_loss(a, b).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match='at least one'):
        embedding_norm_loss()
