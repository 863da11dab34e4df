r"""A content-addressed, crash-safe store of generations.

Every completion is keyed by

.. math::
    \mathrm{key} = \mathrm{SHA256}(\mathrm{backend}, \mathrm{model},
    \mathrm{prompt}, \mathrm{SHA256}(\mathrm{image}), \mathrm{params})

and committed to an SQLite database in WAL mode the moment it arrives, so
an interrupted run (Ctrl-C, a crash, a killed server) loses no finished
generation and a rerun makes no call for it.  Failures are stored with their
error under the same key and are retried by the next run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from mllmrec_pyg.data.hashing import mllmrec_home

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    params TEXT NOT NULL,
    task TEXT NOT NULL,
    subject TEXT NOT NULL,
    prompt TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    text TEXT,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    seconds REAL,
    attempts INTEGER NOT NULL,
    updated REAL NOT NULL
)
"""

_COLUMNS = ('key', 'status', 'backend', 'model', 'params', 'task', 'subject',
            'prompt', 'image_sha256', 'text', 'error', 'prompt_tokens',
            'completion_tokens', 'seconds', 'attempts', 'updated')


def default_cache_path() -> str:
    r"""Returns :obj:`$MLLMREC_HOME/llm/generations.sqlite`."""
    return os.path.join(mllmrec_home(), 'llm', 'generations.sqlite')


def generation_key(identity: Mapping[str, Any], prompt: str,
                   image_sha256: str = '') -> str:
    r"""Returns the cache key of one request: the SHA-256 of the backend's
    :meth:`~mllmrec_pyg.llm.backends.GenerationBackend.identity` (backend,
    model, generation parameters), the full prompt and the image digest."""
    payload = json.dumps({
        'identity': identity,
        'prompt': prompt,
        'image_sha256': image_sha256,
    }, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    r"""One row of the cache."""
    key: str
    status: str
    backend: str
    model: str
    params: str
    task: str
    subject: str
    prompt: str
    image_sha256: str
    text: Optional[str]
    error: Optional[str]
    prompt_tokens: Optional[int]
    completion_tokens: Optional[int]
    seconds: Optional[float]
    attempts: int
    updated: float


class GenerationCache:
    r"""The SQLite (WAL) store of generations.

    Args:
        path (str, optional): The database file; created with its folder if
            absent. (default: :obj:`$MLLMREC_HOME/llm/generations.sqlite`)

    Rows have a :obj:`status` of :obj:`"ok"` (a finished generation) or
    :obj:`"failed"` (the last attempt failed; :obj:`error` says why).
    :meth:`get` returns finished generations only, so failed work is redone.
    """
    def __init__(self, path: Optional[str] = None) -> None:
        self.path = os.path.abspath(path or default_cache_path())
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._lock = threading.Lock()
        # Autocommit (isolation_level=None): every write is durable at once.
        self._conn = sqlite3.connect(self.path, isolation_level=None,
                                     check_same_thread=False, timeout=60.0)
        self._conn.execute('PRAGMA journal_mode=WAL')
        self._conn.execute('PRAGMA synchronous=NORMAL')
        self._conn.execute(_SCHEMA)

    def get(self, key: str) -> Optional[CacheEntry]:
        r"""Returns the finished generation stored under :obj:`key`, or
        :obj:`None` (absent, or failed last time)."""
        entry = self.entry(key)
        if entry is None or entry.status != 'ok':
            return None
        return entry

    def entry(self, key: str) -> Optional[CacheEntry]:
        r"""Returns the row under :obj:`key` whatever its status."""
        with self._lock:
            row = self._conn.execute(
                f'SELECT {", ".join(_COLUMNS)} FROM generations WHERE key = ?',
                (key, )).fetchone()
        return None if row is None else CacheEntry(*row)

    def put(self, key: str, *, identity: Mapping[str, Any], task: str,
            subject: str, prompt: str, image_sha256: str = '',
            text: Optional[str] = None, error: Optional[str] = None,
            prompt_tokens: Optional[int] = None,
            completion_tokens: Optional[int] = None,
            seconds: Optional[float] = None) -> None:
        r"""Commits one outcome: a generation (:obj:`text`) or a failure
        (:obj:`error`).  A failure never overwrites a finished generation.

        Args:
            key (str): From :func:`generation_key`.
            identity (Mapping): The backend's identity.
            task (str): :obj:`"describe"` or :obj:`"prefer"`.
            subject (str): The item or user id the request was for.
        """
        if (text is None) == (error is None):
            raise ValueError('Give exactly one of text= and error=')
        status = 'ok' if text is not None else 'failed'
        with self._lock:
            row = self._conn.execute(
                'SELECT status, attempts FROM generations WHERE key = ?',
                (key, )).fetchone()
            if row is not None and row[0] == 'ok' and status == 'failed':
                return
            attempts = (row[1] if row is not None else 0) + 1
            self._conn.execute(
                'INSERT OR REPLACE INTO generations VALUES '
                '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (key, status, str(identity['backend']),
                 str(identity['model']),
                 json.dumps(identity.get('params', {}), sort_keys=True),
                 task, subject, prompt, image_sha256, text, error,
                 prompt_tokens, completion_tokens, seconds, attempts,
                 time.time()))

    def failures(self, task: Optional[str] = None) -> List[CacheEntry]:
        r"""Returns the rows whose last attempt failed."""
        query = (f'SELECT {", ".join(_COLUMNS)} FROM generations '
                 "WHERE status = 'failed'")
        params: tuple = ()
        if task is not None:
            query += ' AND task = ?'
            params = (task, )
        with self._lock:
            rows = self._conn.execute(query + ' ORDER BY updated',
                                      params).fetchall()
        return [CacheEntry(*row) for row in rows]

    def counts(self) -> Dict[str, int]:
        r"""Returns the number of rows per status."""
        with self._lock:
            rows = self._conn.execute(
                'SELECT status, COUNT(*) FROM generations GROUP BY status'
            ).fetchall()
        return {status: count for status, count in rows}

    def __len__(self) -> int:
        return sum(self.counts().values())

    def export(self, path: str) -> int:
        r"""Writes every row to :obj:`path` as CSV (``.csv``) or Parquet
        (``.parquet``, needs :obj:`pyarrow`); returns the number of rows."""
        import pandas as pd

        with self._lock:
            frame = pd.read_sql_query(
                f'SELECT {", ".join(_COLUMNS)} FROM generations ORDER BY '
                'task, subject, updated', self._conn)
        extension = os.path.splitext(path)[1].lower()
        if extension == '.csv':
            frame.to_csv(path, index=False)
        elif extension == '.parquet':
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"Cannot export the generation cache to '{path}':"
                             f" use a '.csv' or '.parquet' file name")
        return len(frame)

    def close(self) -> None:
        r"""Closes the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.path!r})'
