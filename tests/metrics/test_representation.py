import math

import pytest
import torch

from mllmrec_pyg.metrics import alignment, uniformity, user_item_uniformity


def test_alignment_by_hand():
    # Normalised: users (0.6, 0.8), (0, 1); items (1, 0), (0, 1).
    user = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    item = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    pairs = torch.tensor([[0, 0, 1], [0, 1, 1]])
    # Squared distances: 0.4^2 + 0.8^2 = 0.8, 0.6^2 + 0.2^2 = 0.4, 0.
    out = alignment(user, item, pairs)
    assert out.dtype == torch.float64
    assert out.item() == pytest.approx(1.2 / 3, abs=1e-15)
    assert alignment(user, item, pairs, alpha=1).item() == pytest.approx(
        (math.sqrt(0.8) + math.sqrt(0.4)) / 3, abs=1e-15)
    # A repeated pair counts once per copy.
    assert alignment(user, item, torch.tensor([[0, 0, 1], [0, 0, 1]])).item() == \
        pytest.approx(1.6 / 3, abs=1e-15)


def test_alignment_properties():
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    pairs = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    assert alignment(x, x, pairs).item() == 0.0
    # Only directions count.
    assert alignment(x, 7.0 * x, pairs).item() == pytest.approx(0.0, abs=1e-15)
    # Antipodal pairs are the farthest: ||2 f(u)||^2 = 4.
    assert alignment(x, -x, pairs).item() == pytest.approx(4.0, abs=1e-12)


def test_alignment_errors():
    x = torch.ones(2, 2)
    with pytest.raises(ValueError, match='at least one positive'):
        alignment(x, x, torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r'\[2, P\] tensor'):
        alignment(x, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='alpha must be positive'):
        alignment(x, x, torch.zeros(2, 1, dtype=torch.long), alpha=0)


def test_uniformity_by_hand():
    # Two antipodal points: one pair at squared distance 4.
    antipodal = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])
    assert uniformity(antipodal).item() == pytest.approx(math.log(math.exp(-8)),
                                                         abs=1e-12)
    assert uniformity(antipodal, t=1).item() == pytest.approx(-4.0, abs=1e-12)
    # Three points (1, 0), (0, 1), (-1, 0): squared distances 2, 4, 2.
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert uniformity(x).item() == pytest.approx(expected, abs=1e-12)
    # Computed in blocks of any size: the same sum.
    assert uniformity(x, block_size=1).item() == pytest.approx(expected, abs=1e-12)
    assert uniformity(x, block_size=2).item() == pytest.approx(expected, abs=1e-12)
    # Coinciding points: exp(0) for every pair.
    assert uniformity(torch.ones(4, 3)).item() == pytest.approx(0.0, abs=1e-12)


def test_uniformity_large_t_does_not_underflow():
    # exp(-2000 * 4) underflows float64; the log-sum-exp does not.
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(antipodal, t=2000).item() == pytest.approx(-8000.0, rel=1e-12)


def test_uniformity_samples_points_when_large():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    exact = uniformity(x, max_points=None)
    assert uniformity(x, max_points=50).item() == exact.item()
    sampled = uniformity(x, max_points=10)
    # The default generator is seeded: the same sample on every call.
    assert uniformity(x, max_points=10).item() == sampled.item()
    index = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:10]
    assert sampled.item() == pytest.approx(uniformity(x[index], max_points=None).item(),
                                           abs=1e-15)
    assert sampled.item() != exact.item()
    other = uniformity(x, max_points=10, generator=torch.Generator().manual_seed(5))
    assert other.item() != sampled.item()


def test_uniformity_errors():
    with pytest.raises(ValueError, match='at least two points'):
        uniformity(torch.ones(1, 3))
    with pytest.raises(ValueError, match='t must be positive'):
        uniformity(torch.ones(2, 3), t=0)
    with pytest.raises(ValueError, match='max_points must be at least 2'):
        uniformity(torch.ones(4, 3), max_points=1)


def test_user_item_uniformity_is_the_mean_of_both_sides():
    users = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # -8
    items = torch.ones(3, 2)  # 0
    assert user_item_uniformity(users, items).item() == pytest.approx(-4.0, abs=1e-12)


def test_gradients_flow():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    (alignment(x, x.flip(0), torch.tensor([[0], [0]])) + uniformity(x)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
