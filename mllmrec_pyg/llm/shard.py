r"""Splitting the LLM stage's work across machines: ``--shard I/N``.

Shard :math:`I` of :math:`N` (1-based, :math:`1 \le I \le N`, so
``--shard 1/2`` and ``--shard 2/2`` are the two halves) takes the users or
items whose raw id :math:`r` (as in the dataset's files) satisfies

.. math::
    \mathrm{int}(\mathrm{SHA256}(r)_{0:8}) \bmod N = I - 1,

the first eight bytes of the SHA-256 of the UTF-8 id read as a big-endian
integer.  The hash is stable (never Python's salted :func:`hash`), so the
:math:`N` shards never overlap, together cover every id, and a rerun, on
any machine and in any process, takes the same share.  It depends on the
id alone: the share of a user does not change with the other users of the
dataset or with the order of its files.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List, Optional, Sequence

__all__ = ['Shard', 'parse_shard', 'shard_of']


def shard_of(raw_id: str, count: int) -> int:
    r"""Returns the 0-based shard (:obj:`0 <= s < count`) of the raw id
    :obj:`raw_id` among :obj:`count` shards: the first eight bytes of its
    SHA-256 (UTF-8), big-endian, modulo :obj:`count`.

    Args:
        raw_id (str): A user or item id as in the dataset's files.
        count (int): The number of shards (:obj:`>= 1`).
    """
    if count < 1:
        raise ValueError(f'count must be >= 1 (got {count})')
    digest = hashlib.sha256(str(raw_id).encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') % count


@dataclass(frozen=True)
class Shard:
    r"""Shard :obj:`index` of :obj:`count` (1-based, as ``--shard I/N``).

    Args:
        index (int): :math:`I`, from :obj:`1` to :obj:`count`.
        count (int): :math:`N`, the number of shards (:obj:`>= 1`).
    """
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(_shard_error(f'{self.index}/{self.count}'))

    def contains(self, raw_id: str) -> bool:
        r"""Returns whether this shard takes the raw id :obj:`raw_id`
        (:func:`shard_of` is :obj:`index - 1`)."""
        return shard_of(raw_id, self.count) == self.index - 1

    def select(self, raw_ids: Sequence[str],
               indices: Optional[Sequence[int]] = None) -> List[int]:
        r"""Returns the indices, among :obj:`indices` (default: all of
        :obj:`range(len(raw_ids))`), whose raw id this shard takes, in the
        order given.

        Args:
            raw_ids (Sequence[str]): The raw id per index (e.g.
                :obj:`data['user'].raw_id`).
            indices (Sequence[int], optional): The candidates.
                (default: :obj:`None`, every index)
        """
        candidates = range(len(raw_ids)) if indices is None else indices
        return [int(i) for i in candidates if self.contains(raw_ids[int(i)])]

    def __str__(self) -> str:
        return f'{self.index}/{self.count}'


def _shard_error(text: str) -> str:
    return (f"--shard {text!r}: expected I/N with 1 <= I <= N (1-based: "
            "'--shard 1/2' and '--shard 2/2' are the two halves)")


def parse_shard(text: str) -> Shard:
    r"""Returns the :class:`Shard` of a ``--shard`` value :obj:`"I/N"`.

    Args:
        text (str): The option's value as typed, e.g. :obj:`"1/2"`.

    Raises:
        ValueError: One line naming ``--shard`` and the fix, for anything
            but two integers :obj:`1 <= I <= N` (e.g. :obj:`"0/2"`,
            :obj:`"3/2"`, :obj:`"1/0"`, :obj:`"x"`).
    """
    index, sep, count = str(text).strip().partition('/')
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError:
        raise ValueError(_shard_error(text)) from None
