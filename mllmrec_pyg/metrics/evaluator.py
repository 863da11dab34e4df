r"""Full-ranking evaluation of a :class:`~mllmrec_pyg.nn.models.base.Recommender`
on the held-out split of a recommendation :class:`~torch_geometric.data.HeteroData`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import List, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mllmrec_pyg import distributed
from mllmrec_pyg.data import INTERACTS, split_edge_index, train_edge_index
from mllmrec_pyg.nn.models.base import Recommender
from mllmrec_pyg.utils.pairs import PairSet
from mllmrec_pyg.utils.ranking import topk_items

from .beyond_accuracy import catalogue_coverage, novelty
from .ranking import RANKING_METRICS, ranking_metrics

#: What the evaluator ranks with: a recommender (its :meth:`embed` is called
#: in evaluation mode) or its :obj:`(user_emb, item_emb)` representations.
EmbeddingSource = Union[Recommender, tuple[Tensor, Tensor]]


@dataclass
class _UserItemSets:
    r"""A user -> sorted, de-duplicated item lists map in CSR form, over the
    :class:`~mllmrec_pyg.utils.PairSet` that tests membership."""
    pairs: PairSet
    ptr: Tensor
    item: Tensor

    @classmethod
    def from_pairs(cls, pairs: PairSet, num_users: int) -> _UserItemSets:
        ptr = torch.zeros(num_users + 1, dtype=torch.long)
        ptr[1:] = torch.bincount(pairs.user, minlength=num_users).cumsum(0)
        return cls(pairs=pairs, ptr=ptr, item=pairs.item)

    @classmethod
    def from_edges(cls, edge_index: Tensor, num_users: int, num_items: int) -> _UserItemSets:
        return cls.from_pairs(PairSet(edge_index, num_items), num_users)

    def union(self, other: _UserItemSets, num_users: int) -> _UserItemSets:
        return _UserItemSets.from_pairs(self.pairs.union(other.pairs), num_users)

    def count(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def rows(self, users: Tensor) -> tuple[Tensor, Tensor]:
        r"""Returns (position in :obj:`users`, item) of every item of
        :obj:`users`, ordered by position, without a Python loop over
        users."""
        start, count = self.ptr[users], self.ptr[users + 1] - self.ptr[users]
        row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), count)
        offset = torch.arange(row.numel(), device=users.device)
        offset = offset - (count.cumsum(0) - count)[row] + start[row]
        return row, self.item[offset]

    def to(self, device: torch.device) -> _UserItemSets:
        return _UserItemSets(self.pairs.to(device), self.ptr.to(device), self.item.to(device))


@dataclass
class EvaluationResult:
    r"""The outcome of evaluating one split.

    Attributes:
        split (str): :obj:`'val'` or :obj:`'test'`.
        users (torch.Tensor): :obj:`[N]` indices of the evaluated users.
        topk (torch.Tensor): :obj:`[N, K_max]` their ranked item indices,
            training items excluded.
        per_user (Dict[str, torch.Tensor]): Per-user :obj:`[N]` values of
            every ranking metric and of novelty, for significance tests.
        summary (Dict[str, float]): Means over users, plus catalogue
            coverage.
    """
    split: str
    users: Tensor
    topk: Tensor
    per_user: dict[str, Tensor] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.summary[key]

    def save(self, path: str) -> None:
        r"""Writes the per-user arrays, the ranked lists and the summary to
        the :obj:`.npz` file :obj:`path`."""
        arrays: dict[str, np.ndarray] = {
            f'per_user/{k}': v.cpu().numpy() for k, v in self.per_user.items()}
        arrays['split'] = np.array(self.split)
        arrays['users'] = self.users.cpu().numpy()
        arrays['topk'] = self.topk.cpu().numpy()
        arrays['summary'] = np.array(json.dumps(self.summary))
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str) -> EvaluationResult:
        r"""Reads a file written by :meth:`save`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f'{path}: no such per-user result file '
                                    f'(written by EvaluationResult.save / mllmrec train)')
        with np.load(path, allow_pickle=False) as f:
            per_user = {k[len('per_user/'):]: torch.from_numpy(f[k])
                        for k in f.files if k.startswith('per_user/')}
            return cls(split=str(f['split']), users=torch.from_numpy(f['users']),
                       topk=torch.from_numpy(f['topk']), per_user=per_user,
                       summary=json.loads(str(f['summary'])))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(split={self.split}, '
                f'num_users={self.users.numel()})')


class Evaluator:
    r"""Full-ranking evaluator with MMRec's protocol.

    Every evaluated user is scored against the whole catalogue (dot products
    of :meth:`~mllmrec_pyg.nn.models.base.Recommender.embed`'s outputs), the
    user's TRAINING items are excluded, and the top :math:`\max(K)` are
    compared with the user's held-out items of the split by the metrics of
    :mod:`mllmrec_pyg.metrics.ranking` (Recall, NDCG, Precision, MAP, Hit),
    plus catalogue coverage and novelty.

    Evaluated users are those with at least one held-out item in the split
    and at least one training item (MMRec's ``filter_out_cod_start_users``).

    By default (as MMRec) validation items are *not* excluded when ranking
    for the test split: a user's validation items compete with the test
    items.  Then both splits share one ranking, which :meth:`evaluate`
    computes once.  :obj:`exclude_val_at_test=True` also removes them.

    The per-user definitions coincide with those of PyG's
    :class:`~torch_geometric.metrics.LinkPredRecall`,
    :class:`~torch_geometric.metrics.LinkPredNDCG` (unweighted; its ideal
    DCG also runs over :math:`\min(|T_u|, K)`),
    :class:`~torch_geometric.metrics.LinkPredPrecision` and
    :class:`~torch_geometric.metrics.LinkPredMAP` (PyG 2.8), averaged over
    the same users; ``tests/metrics/test_evaluator.py`` checks the
    agreement.  Differences: duplicate held-out (user, item) pairs count
    once here and once per copy in PyG's :math:`|T_u|`; PyG's weighted NDCG
    (graded relevance) has no counterpart here.

    Users are scored in chunks of :obj:`batch_size`, so memory is
    :math:`O(\text{batch\_size} \cdot |\mathcal{I}|)`, never
    :math:`|\mathcal{U}| \times |\mathcal{I}|`.

    Under :mod:`torch.distributed` with more than one rank
    (:mod:`mllmrec_pyg.distributed`), :meth:`evaluate` is a collective that
    every rank must call: rank :math:`r` ranks a contiguous share of the
    evaluated users, made of whole chunks of :obj:`batch_size` users
    (:func:`~mllmrec_pyg.distributed.shard_bounds` over the chunks), and
    the ranked lists are all-gathered in user order.  Every chunk is thus
    scored exactly as one process scores it, and every rank computes the
    metrics of all users from identical lists: the results equal the
    single-process ones EXACTLY, on every rank.  With fewer chunks than
    ranks some ranks rank nothing (lower :obj:`batch_size` to share more).

    Args:
        data (torch_geometric.data.HeteroData): The dataset with
            :obj:`train_mask`, :obj:`val_mask` and :obj:`test_mask` on its
            :obj:`('user', 'interacts', 'item')` edges.
        ks (Sequence[int]): Cut-offs. (default: :obj:`(5, 10, 20, 50)`)
        batch_size (int): Users scored at once. (default: :obj:`1024`)
        exclude_val_at_test (bool): Also exclude validation items when
            ranking for the test split. (default: :obj:`False`, MMRec)
    """
    def __init__(self, data: HeteroData, ks: Sequence[int] = (5, 10, 20, 50),
                 batch_size: int = 1024, exclude_val_at_test: bool = False) -> None:
        if len(ks) == 0 or min(ks) < 1:
            raise ValueError(f'ks must be positive cut-offs, got {list(ks)}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {batch_size}')
        self.ks = sorted(set(int(k) for k in ks))
        self.max_k = self.ks[-1]
        self.batch_size = batch_size
        self.exclude_val_at_test = exclude_val_at_test
        self.num_users = int(data['user'].num_nodes)
        self.num_items = int(data['item'].num_nodes)
        # A catalogue smaller than a cut-off is ranked whole: the positions
        # past its end hold no item (never a hit; precision still divides by
        # k).
        self.rank_k = min(self.max_k, self.num_items)
        num_u, num_i = self.num_users, self.num_items

        self._train = _UserItemSets.from_edges(train_edge_index(data), num_u, num_i)
        self.popularity = torch.bincount(self._train.item, minlength=num_i)
        has_train = self._train.count() > 0
        self._truth: dict[str, _UserItemSets] = {}
        self.users: dict[str, Tensor] = {}
        for split in ('val', 'test'):
            if getattr(data[INTERACTS], f'{split}_mask', None) is None:
                continue
            truth = _UserItemSets.from_edges(split_edge_index(data, split), num_u, num_i)
            self._truth[split] = truth
            self.users[split] = torch.nonzero((truth.count() > 0) & has_train).view(-1)
        self._exclude: dict[str, _UserItemSets] = {split: self._train for split in self._truth}
        if exclude_val_at_test and 'test' in self._truth and 'val' in self._truth:
            self._exclude['test'] = self._train.union(self._truth['val'], num_u)

    @property
    def splits(self) -> list[str]:
        r"""The held-out splits the dataset provides."""
        return list(self._truth)

    def __repr__(self) -> str:
        users = ', '.join(f'{s}={v.numel()}' for s, v in self.users.items())
        return (f'{self.__class__.__name__}(ks={self.ks}, users=({users}), '
                f'exclude_val_at_test={self.exclude_val_at_test})')

    @torch.no_grad()
    def rank(self, user_emb: Tensor, item_emb: Tensor, users: Tensor,
             exclude: Union[str, None] = 'train', k: Union[int, None] = None) -> Tensor:
        r"""Returns the :obj:`[len(users), min(k, num_items)]` top-ranked
        items of :obj:`users` by dot product
        (:func:`~mllmrec_pyg.utils.topk_items`), with the items of
        :obj:`exclude` (:obj:`'train'`, a split whose exclusions to use, or
        :obj:`None`) ranked last.  Scores :obj:`batch_size` users at a
        time; :obj:`k` defaults to the largest cut-off."""
        k = self.rank_k if k is None else k
        device = item_emb.device
        users = users.to(device)
        excluded = None
        if exclude is not None:
            sets = self._train if exclude == 'train' else self._exclude[exclude]
            excluded = torch.stack(sets.to(device).rows(users))
        return topk_items(user_emb, item_emb, users, k, excluded, self.batch_size)

    def is_excluded(self, split: str, users: Tensor, items: Tensor) -> Tensor:
        r"""Whether each (user, item) pair is excluded from the ranking of
        :obj:`split` (a training item, or a validation item at test time
        with :obj:`exclude_val_at_test`)."""
        return self._exclude[split].pairs.to(items.device).contains(
            users.to(items.device), items)

    def _hits(self, split: str, users: Tensor, topk: Tensor) -> Tensor:
        return self._truth[split].pairs.to(topk.device).contains(users.view(-1, 1), topk)

    def _result(self, split: str, users: Tensor, topk: Tensor) -> EvaluationResult:
        hits = self._hits(split, users, topk)
        if hits.size(1) < self.max_k:
            hits = torch.nn.functional.pad(hits, (0, self.max_k - hits.size(1)))
        num_relevant = self._truth[split].count().to(users.device)[users]
        per_user = ranking_metrics(hits, num_relevant, self.ks, RANKING_METRICS)
        popularity = self.popularity.to(topk.device)
        summary: dict[str, float] = {}
        for k in self.ks:
            per_user[f'novelty@{k}'] = novelty(topk, popularity, self.num_users, k)
        for name, values in per_user.items():
            summary[name] = float(values.mean()) if values.numel() > 0 else 0.0
        for k in self.ks:
            summary[f'coverage@{k}'] = catalogue_coverage(topk, self.num_items, k)
        return EvaluationResult(split=split, users=users.cpu(), topk=topk.cpu(),
                                per_user={k: v.cpu() for k, v in per_user.items()},
                                summary=summary)

    @staticmethod
    def _embed(source: EmbeddingSource) -> tuple[Tensor, Tensor]:
        if not isinstance(source, torch.nn.Module):
            user_emb, item_emb = source
            return user_emb, item_emb
        was_training = source.training
        source.eval()
        user_emb, item_emb = source.embed()
        source.train(was_training)
        return user_emb, item_emb

    def _check_splits(self, splits: Sequence[str]) -> None:
        for split in splits:
            if split not in self._truth:
                raise ValueError(f"The dataset has no '{split}' split to evaluate "
                                 f"(available: {self.splits})")

    def _rank_sharded(self, user_emb: Tensor, item_emb: Tensor, users: Tensor,
                      exclude: str) -> Tensor:
        r""":meth:`rank` of :obj:`users`, shared between the ranks by whole
        chunks of :obj:`batch_size` users when distributed."""
        if not distributed.is_distributed():
            return self.rank(user_emb, item_emb, users, exclude=exclude)
        num_chunks = (users.numel() + self.batch_size - 1) // self.batch_size
        first, last = distributed.shard_bounds(num_chunks)
        mine = users[first * self.batch_size:last * self.batch_size]
        return distributed.all_gather_cat(
            self.rank(user_emb, item_emb, mine, exclude=exclude))

    @torch.no_grad()
    def evaluate(self, source: EmbeddingSource,
                 splits: Sequence[str] = ('val', 'test')) -> dict[str, EvaluationResult]:
        r"""Evaluates :obj:`source` (a recommender with :meth:`embed`, or its
        :obj:`(user_emb, item_emb)`) on every split of :obj:`splits`.

        Splits that exclude the same items share one ranking pass.
        """
        self._check_splits(splits)
        user_emb, item_emb = self._embed(source)

        groups: dict[int, list[str]] = {}
        for split in splits:
            groups.setdefault(id(self._exclude[split]), []).append(split)
        out: dict[str, EvaluationResult] = {}
        for members in groups.values():
            users = torch.unique(torch.cat([self.users[s] for s in members]))
            topk = self._rank_sharded(user_emb, item_emb, users, members[0])
            users = users.to(topk.device)
            for split in members:
                index = torch.searchsorted(users, self.users[split].to(topk.device))
                out[split] = self._result(split, users[index], topk[index])
        return {split: out[split] for split in splits}

    @torch.no_grad()
    def recommend(self, source: EmbeddingSource, users: Tensor, split: str = 'test',
                  k: int = 50) -> List[List[int]]:
        r"""Returns the top-:obj:`k` item lists of :obj:`users` as ranked for
        :obj:`split`, best first, with the items excluded from that ranking
        (training items, plus validation items at test time with
        :obj:`exclude_val_at_test`) removed: a user with fewer than
        :obj:`k` candidate items gets a shorter list.

        The ranking is the one :meth:`evaluate` scores
        (:func:`~mllmrec_pyg.utils.topk_items`, the code path of
        :meth:`~mllmrec_pyg.nn.models.Recommender.recommend`), so the lists
        of the evaluated users are the prefixes of their
        :attr:`EvaluationResult.topk`.

        Args:
            source (Recommender or Tuple[torch.Tensor, torch.Tensor]): The
                recommender (embedded in evaluation mode) or its
                :obj:`(user_emb, item_emb)`.
            users (torch.Tensor): :obj:`[N]` user indices, e.g.
                :obj:`evaluator.users['test']`.
            split (str, optional): The split whose exclusions apply,
                :obj:`'val'` or :obj:`'test'`. (default: :obj:`'test'`)
            k (int, optional): The length of the lists. (default: :obj:`50`)
        """
        self._check_splits([split])
        user_emb, item_emb = self._embed(source)
        users = users.cpu()
        topk = self.rank(user_emb, item_emb, users, exclude=split, k=k).cpu()
        excluded = self.is_excluded(split, users.view(-1, 1).expand_as(topk), topk)
        return [row[~drop].tolist() for row, drop in zip(topk, excluded, strict=True)]
