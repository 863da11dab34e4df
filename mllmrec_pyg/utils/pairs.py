r"""The one membership test of (user, item) pairs, shared by the negative
sampler (training positives) and the evaluator (excluded and held-out
items)."""
from __future__ import annotations

import torch
from torch import Tensor


class PairSet:
    r"""A set of (user, item) pairs for vectorised membership tests.

    Each pair is encoded by the integer key

    .. math::
        \kappa(u, i) = u \cdot |\mathcal{I}| + i

    which is unique for :math:`0 \le i < |\mathcal{I}|`; the keys are kept
    sorted and de-duplicated, so that :meth:`contains` is one binary search
    (:func:`torch.searchsorted`) per query, :math:`O(Q \log |\mathcal{P}|)`
    with no Python loop.  Sorting by key sorts the pairs by user, then item.

    .. code-block:: python

        pairs = PairSet(torch.tensor([[0, 0, 1], [2, 5, 2]]), num_items=6)
        pairs.contains(torch.tensor([0, 1]), torch.tensor([5, 5]))
        # tensor([ True, False])

    Args:
        edge_index (torch.Tensor): :obj:`[2, E]` pairs (row 0: user, row 1:
            item); repeated pairs count once.
        num_items (int): The number of items :math:`|\mathcal{I}|`; every
            item index must be smaller.
    """
    def __init__(self, edge_index: Tensor, num_items: int) -> None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must have shape [2, E] "
                             f"(got {list(edge_index.shape)})")
        self.num_items = num_items
        self.keys = torch.unique(edge_index[0].long() * num_items +
                                 edge_index[1].long())

    @classmethod
    def _from_keys(cls, keys: Tensor, num_items: int) -> PairSet:
        out = cls.__new__(cls)
        out.num_items = num_items
        out.keys = keys
        return out

    @property
    def user(self) -> Tensor:
        r"""The users of the pairs, in key order."""
        return self.keys // self.num_items

    @property
    def item(self) -> Tensor:
        r"""The items of the pairs, in key order."""
        return self.keys % self.num_items

    def __len__(self) -> int:
        return self.keys.numel()

    def contains(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Returns whether each pair :obj:`(user, item)` is in the set, as
        a boolean tensor of their broadcast shape.

        Args:
            user (torch.Tensor): User indices.
            item (torch.Tensor): Item indices, broadcastable with
                :obj:`user` (e.g. :obj:`[B, 1]` users against :obj:`[B, K]`
                ranked items).
        """
        query = user * self.num_items + item
        if self.keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, query)
        return self.keys[pos.clamp(max=self.keys.numel() - 1)] == query

    def union(self, other: PairSet) -> PairSet:
        r"""Returns the pairs of :obj:`self` or :obj:`other`."""
        if other.num_items != self.num_items:
            raise ValueError(f"Cannot unite pair sets over {self.num_items} "
                             f"and {other.num_items} items")
        return PairSet._from_keys(torch.unique(torch.cat([self.keys,
                                                          other.keys])),
                                  self.num_items)

    def to(self, device: torch.device | str) -> PairSet:
        r"""Returns the set with its keys on :obj:`device`."""
        return PairSet._from_keys(self.keys.to(device), self.num_items)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_pairs={len(self)}, '
                f'num_items={self.num_items})')
