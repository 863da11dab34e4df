import pytest
import torch
from scipy import stats

from mllmrec_pyg.metrics import EvaluationResult, paired_t_test


def _run(users, values):
    users = torch.tensor(users)
    return EvaluationResult(split='test', users=users,
                            topk=torch.zeros(len(users), 1, dtype=torch.long),
                            per_user={'recall@20': torch.tensor(values, dtype=torch.float64)})


def test_pairs_users_by_id(tmp_path):
    a = _run([0, 1, 2, 3], [0.5, 0.2, 0.9, 0.4])
    b = _run([3, 2, 1, 5], [0.1, 0.3, 0.2, 1.0])  # user 5 is not in a, user 0 not in b
    path = str(tmp_path / 'b.npz')
    b.save(path)
    out = paired_t_test(a, path)
    expected = stats.ttest_rel([0.2, 0.9, 0.4], [0.2, 0.3, 0.1])
    assert out.num_users == 3
    assert out.mean_a == pytest.approx(0.5)
    assert out.mean_b == pytest.approx(0.2)
    assert out.mean_difference == pytest.approx(0.3)
    assert out.t_statistic == pytest.approx(float(expected.statistic))
    assert out.p_value == pytest.approx(float(expected.pvalue))
    # Restricted to users 1 and 3 (user 0 is not in b).
    part = paired_t_test(a, path, users=[0, 1, 3])
    expected = stats.ttest_rel([0.2, 0.4], [0.2, 0.1])
    assert part.num_users == 2 and part.mean_a == pytest.approx(0.3)
    assert part.p_value == pytest.approx(float(expected.pvalue))


def test_identical_runs_and_errors():
    a = _run([0, 1, 2], [0.5, 0.2, 0.9])
    out = paired_t_test(a, a)
    assert (out.t_statistic, out.p_value) == (0.0, 1.0)
    with pytest.raises(ValueError, match="No per-user 'ndcg@20'"):
        paired_t_test(a, a, metric='ndcg@20')
    with pytest.raises(ValueError, match='share 1 evaluated users'):
        paired_t_test(a, _run([2, 7], [0.1, 0.2]))
