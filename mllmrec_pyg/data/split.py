r"""Seeded, reproducible train/valid/test splits and k-core filtering.

All functions work on integer index arrays (one entry per interaction) and
return label arrays with MMRec's convention: 0 = train, 1 = valid, 2 = test.
"""
from __future__ import annotations

from typing import Literal, Optional, Tuple

import numpy as np

SplitMethod = Literal['mmrec', 'user_temporal', 'global_temporal']
TRAIN, VALID, TEST = 0, 1, 2


def mmrec_holdout_counts(n: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""MMRec's per-user rule: a user with :math:`n < 10` interactions holds
    out one valid and one test item; otherwise :math:`k = \lfloor 0.2 n
    \rfloor` items are held out, :math:`\lfloor k / 2 \rfloor` valid and the
    rest test.  Counts are capped by :math:`n` (test first), so a user with
    fewer than three interactions may keep no training item.

    Returns:
        (valid count, test count) per user.
    """
    n = np.asarray(n, dtype=np.int64)
    k = (0.2 * n).astype(np.int64)
    valid = np.where(n < 10, 1, k // 2)
    test = np.where(n < 10, 1, k - k // 2)
    test = np.minimum(test, n)
    valid = np.minimum(valid, n - test)
    return valid, test


def _labels_from_order(user: np.ndarray, order: np.ndarray) -> np.ndarray:
    r"""Given interactions sorted (by :obj:`order`) so that each user's
    interactions are contiguous and in train-then-valid-then-test order,
    assigns MMRec's counts from the end of each user's run."""
    num_users = int(user.max()) + 1 if user.size else 0
    n = np.bincount(user, minlength=num_users)
    valid, test = mmrec_holdout_counts(n)
    sorted_user = user[order]
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    rank = np.arange(user.size) - start[sorted_user]
    from_end = n[sorted_user] - rank  # 1 for the last interaction
    label_sorted = np.full(user.size, TRAIN, dtype=np.int8)
    label_sorted[from_end <= test[sorted_user] + valid[sorted_user]] = VALID
    label_sorted[from_end <= test[sorted_user]] = TEST
    label = np.empty_like(label_sorted)
    label[order] = label_sorted
    return label


def mmrec_split(user: np.ndarray, seed: int = 2024) -> np.ndarray:
    r"""MMRec's per-user random split (see :func:`mmrec_holdout_counts`),
    seeded with :obj:`seed`: the same inputs and seed give the same split."""
    user = np.asarray(user, dtype=np.int64)
    rng = np.random.default_rng(seed)
    key = rng.random(user.size)
    order = np.lexsort((key, user))
    return _labels_from_order(user, order)


def user_temporal_split(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    r"""Per-user temporal split with MMRec's counts: each user's latest
    interactions are test, the ones before them valid (ties keep file
    order)."""
    user = np.asarray(user, dtype=np.int64)
    order = np.lexsort((np.arange(user.size), np.asarray(time), user))
    return _labels_from_order(user, order)


def global_temporal_split(time: np.ndarray,
                          ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1)
                          ) -> np.ndarray:
    r"""Global temporal split: interactions sorted by time (ties keep file
    order); the first :obj:`ratios[0]` are train, the next :obj:`ratios[1]`
    valid, the rest test."""
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-9:
        raise ValueError(f'ratios must be three non-negative numbers summing '
                         f'to 1 (got {ratios})')
    time = np.asarray(time)
    order = np.lexsort((np.arange(time.size), time))
    n_train = int(round(ratios[0] * time.size))
    n_valid = int(round(ratios[1] * time.size))
    label = np.full(time.size, TEST, dtype=np.int8)
    label[order[:n_train]] = TRAIN
    label[order[n_train:n_train + n_valid]] = VALID
    return label


def k_core(user: np.ndarray, item: np.ndarray, user_k: int,
           item_k: Optional[int] = None) -> np.ndarray:
    r"""Iterative k-core filtering: repeatedly drops users with fewer than
    :obj:`user_k` and items with fewer than :obj:`item_k` (default: the same)
    interactions until none is left.  Returns the boolean keep-mask."""
    item_k = user_k if item_k is None else item_k
    keep = np.ones(len(user), dtype=bool)
    if user_k <= 1 and item_k <= 1:
        return keep
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    while True:
        u_deg = np.bincount(user[keep], minlength=int(user.max()) + 1)
        i_deg = np.bincount(item[keep], minlength=int(item.max()) + 1)
        new_keep = keep & (u_deg[user] >= user_k) & (i_deg[item] >= item_k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep
