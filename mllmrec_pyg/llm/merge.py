r"""Merging generation caches: ``mllmrec cache merge OUT IN1 IN2 ...``.

The caches of the shards of one job (``--shard I/N`` on N machines) hold
disjoint keys, and a key is the hash of everything that shaped its
generation (:func:`~mllmrec_pyg.llm.cache.generation_key`), so their union
is a cache from which the unsharded command makes no call.  For a key that
several caches hold, the first entry seen wins (those already in
:obj:`OUT`, then the inputs in the order given), with two exceptions:

* a finished generation (status :obj:`"ok"`) replaces a failure
  (:obj:`"failed"`), and a failure never replaces a generation;
* two generations with the same text are one entry (an *identical*
  duplicate, counted); two with *different* texts under one key are a
  *conflict* (a backend that is not deterministic, e.g. a server batching
  requests): the first is kept, the other dropped, and both are reported
  (:attr:`MergeReport.conflicts`).

The merge is all or nothing: into an existing :obj:`OUT` it is a single
SQLite transaction, and a new :obj:`OUT` is written to a temporary file in
its folder and renamed when complete, so an interrupted merge (Ctrl-C, a
crash, a bad input) leaves :obj:`OUT` as it was.
"""
from __future__ import annotations

import os
import pathlib
import sqlite3
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from mllmrec_pyg.llm.cache import (
    _COLUMNS,
    _COLUMNS_BEFORE_FINISH_REASON,
    GenerationCache,
    _writable,
)

__all__ = ['MergeConflict', 'MergeReport', 'merge_caches']


@dataclass(frozen=True)
class MergeConflict:
    r"""Two different generations stored under one key.

    Attributes:
        key (str): The cache key.
        task (str): :obj:`"describe"` or :obj:`"prefer"`.
        subject (str): The item or user index (or indices) of the kept entry.
        kept (str): The file whose entry was kept.
        dropped (str): The file whose entry was dropped.
    """
    key: str
    task: str
    subject: str
    kept: str
    dropped: str


@dataclass
class MergeReport:
    r"""What :func:`merge_caches` did.

    Attributes:
        out (str): The merged cache.
        inputs (List[str]): The caches merged into it, in order.
        existing (int): Rows :obj:`out` held before the merge.
        added (int): Rows copied for keys :obj:`out` did not hold.
        identical (int): Generations already held with the same text
            (merged silently).
        replaced_failures (int): Failures replaced by a generation.
        failures_ignored (int): Failures not copied: the key already had a
            generation or a failure.
        conflicts (List[MergeConflict]): Keys with two different
            generations (the first kept).
        rows (int): Rows of :obj:`out` after the merge.
    """
    out: str
    inputs: List[str]
    existing: int = 0
    added: int = 0
    identical: int = 0
    replaced_failures: int = 0
    failures_ignored: int = 0
    conflicts: List[MergeConflict] = field(default_factory=list)
    rows: int = 0

    def lines(self, max_keys: int = 5) -> List[str]:
        r"""Returns the report as printed by ``mllmrec cache merge``: one
        line of counts, then, for conflicts, their count and the first
        :obj:`max_keys` keys.

        Args:
            max_keys (int, optional): Conflicting keys listed.
                (default: :obj:`5`)
        """
        lines = [
            f'merged {len(self.inputs)} caches into {self.out}: '
            f'{self.rows} entries ({self.existing} there before, '
            f'{self.added} added, {self.identical} identical duplicates, '
            f'{self.replaced_failures} failures replaced by a generation, '
            f'{self.failures_ignored} failures not copied, '
            f'{len(self.conflicts)} conflicts)']
        if self.conflicts:
            shown = ', '.join(
                f'{c.key} ({c.task} {c.subject}: kept {c.kept}, dropped '
                f'{c.dropped})' for c in self.conflicts[:max_keys])
            more = len(self.conflicts) - max_keys
            lines.append(
                f'{len(self.conflicts)} keys hold different generations in '
                f'different caches; the first entry of each was kept: {shown}'
                + (f' and {more} more' if more > 0 else ''))
        return lines


def _open_input(path: str) -> Tuple[sqlite3.Connection, List[str]]:
    r"""Opens an input cache read-only; returns it and its columns."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: input cache not found; check the '
                                'path')
    if os.path.isdir(path):
        raise ValueError(f'{path}: is a folder, not a cache file; pass the '
                         '.sqlite file')
    conn: Optional[sqlite3.Connection] = None
    try:
        folder = os.path.dirname(os.path.abspath(path))
        if _writable(path) and _writable(folder):
            # Read only (query_only), but able to remove the WAL side files
            # when closed, as the shard's own process did.
            conn = sqlite3.connect(path)
            conn.execute('PRAGMA query_only = ON')
        else:
            uri = pathlib.Path(os.path.abspath(path)).as_uri() + '?mode=ro'
            conn = sqlite3.connect(uri, uri=True)
        columns = [row[1] for row in
                   conn.execute('PRAGMA table_info(generations)')]
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise ValueError(f'{path}: not a readable cache ({exc}); check the '
                         'file, or copy it again from its machine') from None
    if tuple(columns) not in (_COLUMNS, _COLUMNS_BEFORE_FINISH_REASON):
        conn.close()
        found = ', '.join(columns) if columns else 'no generations table'
        raise ValueError(f'{path}: not a generation cache ({found}); pass '
                         'the --cache file of `mllmrec prefer` or '
                         '`mllmrec describe`')
    return conn, columns


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _remove(path: str) -> None:
    for suffix in ('', '-wal', '-shm', '-journal'):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def _merge_into(conn: sqlite3.Connection, report: MergeReport,
                inputs: Sequence[Tuple[str, sqlite3.Connection, List[str]]],
                out_label: str) -> None:
    placeholders = ', '.join('?' * len(_COLUMNS))
    insert = (f'INSERT OR REPLACE INTO generations ({", ".join(_COLUMNS)}) '
              f'VALUES ({placeholders})')
    # Where each key's kept entry came from, for the conflict report.
    origin: Dict[str, str] = {}
    for path, source, columns in inputs:
        missing = len(_COLUMNS) - len(columns)
        try:
            rows = source.execute(f'SELECT {", ".join(columns)} FROM '
                                  'generations ORDER BY key')
            for row in rows:
                row = tuple(row) + (None, ) * missing
                key, status, text = row[0], row[1], row[9]
                held = conn.execute(
                    'SELECT status, text, task, subject FROM generations '
                    'WHERE key = ?', (key, )).fetchone()
                if held is None:
                    conn.execute(insert, row)
                    origin[key] = path
                    report.added += 1
                elif status != 'ok':
                    report.failures_ignored += 1
                elif held[0] != 'ok':
                    conn.execute(insert, row)
                    origin[key] = path
                    report.replaced_failures += 1
                elif held[1] == text:
                    report.identical += 1
                else:
                    report.conflicts.append(MergeConflict(
                        key=key, task=held[2], subject=held[3],
                        kept=origin.get(key, out_label), dropped=path))
        except sqlite3.DatabaseError as exc:
            raise ValueError(f'{path}: not a readable cache ({exc}); check '
                             'the file, or copy it again from its machine; '
                             'nothing was merged') from None


def merge_caches(out: str, inputs: Sequence[str]) -> MergeReport:
    r"""Merges the generation caches :obj:`inputs` into :obj:`out` (created
    if absent, merged into if present), all or nothing; see the module's
    documentation for which entry a key keeps.

    Args:
        out (str): The merged cache; must not be one of :obj:`inputs`.
        inputs (Sequence[str]): The caches to merge, in order (the first
            entry seen for a key wins).

    Raises:
        FileNotFoundError: If an input does not exist.
        ValueError: With the file and the fix, if no input is given,
            :obj:`out` is an input, or an input (or :obj:`out`) is not a
            readable generation cache.
    """
    if not inputs:
        raise ValueError('give at least one input cache: mllmrec cache merge '
                         'OUT.sqlite IN1.sqlite IN2.sqlite ...')
    for path in inputs:
        if _same_file(out, path):
            raise ValueError(f'{out}: the output is also an input; write the '
                             'merge to another file (OUT.sqlite may be an '
                             'existing cache that is not listed as an input)')
    opened: List[Tuple[str, sqlite3.Connection, List[str]]] = []
    target = out
    created = False
    try:
        for path in inputs:
            conn, columns = _open_input(path)
            opened.append((path, conn, columns))
        if not os.path.exists(out):
            folder = os.path.dirname(os.path.abspath(out))
            target = os.path.join(folder, f'.{os.path.basename(out)}.'
                                  f'partial-{os.getpid()}')
            _remove(target)
            created = True
        # Creates the schema (or upgrades an older OUT) and refuses an OUT
        # that is not a writable generation cache.
        GenerationCache(target).close()
        report = MergeReport(out=out, inputs=list(inputs))
        conn = sqlite3.connect(target, isolation_level=None, timeout=60.0)
        try:
            conn.execute('BEGIN IMMEDIATE')
            try:
                report.existing = int(conn.execute(
                    'SELECT COUNT(*) FROM generations').fetchone()[0])
                _merge_into(conn, report, opened, out)
                report.rows = int(conn.execute(
                    'SELECT COUNT(*) FROM generations').fetchone()[0])
                conn.execute('COMMIT')
            except BaseException:
                conn.execute('ROLLBACK')
                raise
        finally:
            conn.close()
        if created:
            os.replace(target, out)
            created = False
        return report
    finally:
        for _, source, _ in opened:
            source.close()
        if created:
            _remove(target)
