r"""Paired significance test between two evaluations of the same users."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
from scipy import stats

from .evaluator import EvaluationResult

ResultSource = Union[EvaluationResult, str]


@dataclass(frozen=True)
class PairedTTest:
    r"""The outcome of :func:`paired_t_test`."""
    metric: str
    num_users: int
    mean_a: float
    mean_b: float
    t_statistic: float
    p_value: float

    @property
    def mean_difference(self) -> float:
        return self.mean_a - self.mean_b


def paired_t_test(a: ResultSource, b: ResultSource, metric: str = 'recall@20',
                  users: Optional[Sequence[int]] = None) -> PairedTTest:
    r"""Two-sided paired Student's :math:`t`-test of :obj:`metric` between two
    runs, pairing the per-user values of the users both runs evaluated:

    .. math::
        t = \frac{\bar{d}}{s_d / \sqrt{n}}, \qquad d_u = m^{(a)}_u - m^{(b)}_u

    Args:
        a (EvaluationResult or str): The first run, or the :obj:`.npz` file
            :meth:`EvaluationResult.save` wrote (``per_user_test.npz`` of
            ``mllmrec train``).
        b (EvaluationResult or str): The second run, likewise.
        metric (str): A per-user metric, e.g. :obj:`'ndcg@20'`.
            (default: :obj:`'recall@20'`)
        users (Sequence[int], optional): Pair only these users (e.g. those a
            partial LLM run covered). (default: :obj:`None`, every user
            both runs evaluated)
    """
    run_a = EvaluationResult.load(a) if isinstance(a, str) else a
    run_b = EvaluationResult.load(b) if isinstance(b, str) else b
    for run in (run_a, run_b):
        if metric not in run.per_user:
            raise ValueError(f"No per-user '{metric}' in the {run.split} result "
                             f"(available: {', '.join(sorted(run.per_user))})")
    users_a, users_b = run_a.users.numpy(), run_b.users.numpy()
    common, index_a, index_b = np.intersect1d(users_a, users_b, return_indices=True)
    if users is not None:
        keep = np.isin(common, np.asarray(users))
        common, index_a, index_b = common[keep], index_a[keep], index_b[keep]
    if common.size < 2:
        raise ValueError(f'The two runs share {common.size} evaluated users; a paired '
                         f't-test needs at least two (were they run on the same split?)')
    values_a = run_a.per_user[metric].numpy()[index_a]
    values_b = run_b.per_user[metric].numpy()[index_b]
    if np.array_equal(values_a, values_b):
        t_statistic, p_value = 0.0, 1.0
    else:
        result = stats.ttest_rel(values_a, values_b)
        t_statistic, p_value = float(result.statistic), float(result.pvalue)
    return PairedTTest(metric=metric, num_users=int(common.size),
                       mean_a=float(values_a.mean()), mean_b=float(values_b.mean()),
                       t_statistic=t_statistic, p_value=p_value)
