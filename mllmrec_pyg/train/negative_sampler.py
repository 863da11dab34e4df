r"""Uniform negative sampling for BPR training, rejecting training positives."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import torch
from torch import Tensor

from mllmrec_pyg.utils.pairs import PairSet


class UniformNegativeSampler:
    r"""Draws (user, positive item, negative item) triples for the BPR loss,
    as MMRec's ``TrainDataLoader``: each epoch visits every TRAINING
    interaction once in a shuffled order and pairs it with one negative item
    drawn uniformly from the items seen in training, re-drawn while it is one
    of the user's training positives.

    .. math::
        j \sim \mathcal{U}\left(\mathcal{I}_{\text{train}} \setminus
        \mathcal{I}^{+}_u\right)

    Rejection is vectorised: all negatives of an epoch are drawn at once and
    only the rejected ones are re-drawn, membership being tested by the
    binary search of :class:`~mllmrec_pyg.utils.PairSet` (:attr:`positives`).

    Args:
        train_edge_index (torch.Tensor): :obj:`[2, E]` TRAINING user -> item
            edges, as :func:`mllmrec_pyg.data.train_edge_index` returns.
        num_items (int): Number of items of the catalogue.
        batch_size (int): Triples per batch. (default: :obj:`2048`)
        all_items (bool): Draw from the whole catalogue instead of the items
            with a training interaction (MMRec's choice).
            (default: :obj:`False`)
    """
    def __init__(self, train_edge_index: Tensor, num_items: int, batch_size: int = 2048,
                 all_items: bool = False) -> None:
        if train_edge_index.dim() != 2 or train_edge_index.size(0) != 2:
            raise ValueError(f'train_edge_index must have shape [2, E], got '
                             f'{tuple(train_edge_index.shape)}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {batch_size}')
        self.num_items = num_items
        self.batch_size = batch_size
        self.all_items = all_items
        self.user = train_edge_index[0].long().cpu()
        self.item = train_edge_index[1].long().cpu()
        self.positives = PairSet(torch.stack([self.user, self.item]), num_items)
        if all_items:
            self.candidates = torch.arange(num_items)
        else:
            self.candidates = torch.unique(self.item)
        if self.user.numel() > 0:
            positives = torch.bincount(self.positives.user)
            if int(positives.max()) >= self.candidates.numel():
                user = int(positives.argmax())
                raise ValueError(f'User {user} has a training interaction with every '
                                 f'candidate item, so no negative item exists for it; '
                                 f'drop the user or pass all_items=True')

    @property
    def num_interactions(self) -> int:
        return self.user.numel()

    def __len__(self) -> int:
        r"""Number of batches per epoch."""
        return (self.num_interactions + self.batch_size - 1) // self.batch_size

    def is_positive(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Whether each (user, item) pair is a training interaction."""
        return self.positives.contains(user, item)

    def sample_negatives(self, user: Tensor,
                         generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Returns one negative item per entry of :obj:`user`."""
        draw = torch.randint(self.candidates.numel(), user.shape, generator=generator)
        neg = self.candidates[draw]
        todo = torch.nonzero(self.is_positive(user, neg)).view(-1)
        while todo.numel() > 0:
            draw = torch.randint(self.candidates.numel(), todo.shape, generator=generator)
            neg[todo] = self.candidates[draw]
            todo = todo[self.is_positive(user[todo], neg[todo])]
        return neg

    def epoch(self, generator: Optional[torch.Generator] = None
              ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        r"""Yields the :obj:`(user, pos_item, neg_item)` batches of one epoch,
        shuffled; with a seeded :obj:`generator` the epoch is reproducible."""
        perm = torch.randperm(self.num_interactions, generator=generator)
        user, pos = self.user[perm], self.item[perm]
        neg = self.sample_negatives(user, generator)
        for start in range(0, perm.numel(), self.batch_size):
            end = start + self.batch_size
            yield user[start:end], pos[start:end], neg[start:end]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_interactions={self.num_interactions}, '
                f'num_candidates={self.candidates.numel()}, batch_size={self.batch_size})')
