r"""A content-addressed, crash-safe store of generations.

Every completion is keyed by

.. math::
    \mathrm{key} = \mathrm{SHA256}(\mathrm{backend}, \mathrm{model},
    \mathrm{prompt}, \mathrm{SHA256}(\mathrm{image}), \mathrm{params},
    \mathrm{system})

where :math:`\mathrm{params}` are the backend's generation parameters
(token cap, seed, and the decoding settings: repetition penalties, stop
sequences, see :obj:`~mllmrec_pyg.llm.backends.DECODINGS`) and
:math:`\mathrm{system}` the system message, left out of the key when there
is none (so the keys of requests without one are those of earlier
versions).

and committed to an SQLite database in WAL mode the moment it arrives, so
an interrupted run (Ctrl-C, a crash, a killed server) loses no finished
generation and a rerun makes no call for it.  Failures are stored with their
error (secrets redacted, :func:`~mllmrec_pyg.llm.redact.redact_secrets`)
under the same key and are retried by the next run.

A cache that cannot be used (not a database, truncated, read-only, in a
read-only folder) is refused with a one-line :class:`ValueError` naming the
file and the fix when it is opened, before any generation starts.
:func:`generations_saved` counts the generations this process committed,
for the "interrupted, N generations saved" line of an interrupted command.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from mllmrec_pyg.data.hashing import mllmrec_home
from mllmrec_pyg.llm.redact import redact_secrets
from mllmrec_pyg.utils.paths import existing_ancestor

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
    updated REAL NOT NULL,
    system TEXT,
    finish_reason TEXT
)
"""

_COLUMNS = ('key', 'status', 'backend', 'model', 'params', 'task', 'subject',
            'prompt', 'image_sha256', 'text', 'error', 'prompt_tokens',
            'completion_tokens', 'seconds', 'attempts', 'updated', 'system',
            'finish_reason')

#: The columns of caches written before :obj:`system` and
#: :obj:`finish_reason` were stored; such a cache gets the two columns
#: (empty for its old rows) when it is opened.
_COLUMNS_BEFORE_FINISH_REASON = _COLUMNS[:-2]


_SAVED = 0
_SAVED_LOCK = threading.Lock()


def generations_saved() -> int:
    r"""Returns how many generations this process has committed to a
    generation cache so far (every :meth:`GenerationCache.put` of a text,
    in any cache; failures do not count).

    Each is durable the moment it is counted, so an interrupted command can
    report :obj:`"interrupted, N generations saved, rerun to resume"`: a
    rerun reads them back without a call.
    """
    with _SAVED_LOCK:
        return _SAVED


def _count_saved() -> None:
    global _SAVED
    with _SAVED_LOCK:
        _SAVED += 1


def _writable(path: str) -> bool:
    # os.access is always True for root: the mode bits say "read-only" too.
    mode = os.stat(path).st_mode
    wanted = os.W_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)
    return os.access(path, wanted) and bool(mode & 0o222)


def _add_columns(conn: sqlite3.Connection, names: Sequence[str]) -> None:
    for name in names:
        try:
            conn.execute(f'ALTER TABLE generations ADD COLUMN {name} TEXT')
        except sqlite3.OperationalError as exc:
            # Another process opening the same old cache added it first.
            if 'duplicate column' not in str(exc):
                raise


def default_cache_path() -> str:
    r"""Returns :obj:`$MLLMREC_HOME/llm/generations.sqlite`."""
    return os.path.join(mllmrec_home(), 'llm', 'generations.sqlite')


def generation_key(identity: Mapping[str, Any], prompt: str,
                   image_sha256: str = '', system: Optional[str] = None) -> str:
    r"""Returns the cache key of one request: the SHA-256 of the backend's
    :meth:`~mllmrec_pyg.llm.backends.GenerationBackend.identity` (backend,
    model, generation parameters, decoding settings included), the full
    prompt, the image digest and the system message.

    Args:
        identity (Mapping): The backend's identity.
        prompt (str): The full prompt.
        image_sha256 (str, optional): The image digest (:obj:`''`: no
            image). (default: :obj:`''`)
        system (str, optional): The system message; :obj:`None` or
            :obj:`''` (none) leaves it out of the key. (default: :obj:`None`)
    """
    fields: Dict[str, Any] = {
        'identity': identity,
        'prompt': prompt,
        'image_sha256': image_sha256,
    }
    if system:
        fields['system'] = system
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False,
                         default=str)
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
    system: Optional[str] = None
    finish_reason: Optional[str] = None


class GenerationCache:
    r"""The SQLite (WAL) store of generations.

    Args:
        path (str, optional): The database file; created with its folder if
            absent. (default: :obj:`$MLLMREC_HOME/llm/generations.sqlite`)

    Rows have a :obj:`status` of :obj:`"ok"` (a finished generation) or
    :obj:`"failed"` (the last attempt failed; :obj:`error` says why).
    :meth:`get` returns finished generations only, so failed work is redone.

    Raises:
        ValueError: With the file (or folder) and the fix, when the cache
            cannot be used: not a database, truncated, not a generation
            cache, read-only, or in a folder that cannot be written
            (:obj:`$MLLMREC_HOME` for the default cache).
    """
    def __init__(self, path: Optional[str] = None) -> None:
        self._default = not path
        self.path = os.path.abspath(path or default_cache_path())
        self._lock = threading.Lock()
        self._check_location()
        conn: Optional[sqlite3.Connection] = None
        try:
            # Autocommit (isolation_level=None): every write is durable at
            # once.
            conn = sqlite3.connect(self.path, isolation_level=None,
                                   check_same_thread=False, timeout=60.0)
            conn.execute('PRAGMA journal_mode=WAL')
            conn.execute('PRAGMA synchronous=NORMAL')
            columns = [row[1] for row in
                       conn.execute('PRAGMA table_info(generations)')]
            if tuple(columns) == _COLUMNS_BEFORE_FINISH_REASON:
                # An older cache: its rows stay valid (their keys did not
                # change); it gains the two columns.
                _add_columns(conn, ('system', 'finish_reason'))
            elif columns and tuple(columns) != _COLUMNS:
                raise ValueError(
                    f'{self.path}: not a generation cache (its generations '
                    f"table has the columns {', '.join(columns)}); move it "
                    'away or pass --cache NEW.sqlite')
            conn.execute(_SCHEMA)
            # Refuse a cache that cannot be written now, not at the first
            # finished generation.
            version = int(conn.execute('PRAGMA user_version').fetchone()[0])
            conn.execute('BEGIN IMMEDIATE')
            try:
                conn.execute(f'PRAGMA user_version = {version}')
            finally:
                conn.execute('ROLLBACK')
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise ValueError(self._open_error(exc)) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._conn = conn

    def _folder_error(self, folder: str, reason: str) -> str:
        if self._default:
            return (f'{folder}: cannot create the generation cache there '
                    f'({reason}); set MLLMREC_HOME to a writable folder or '
                    'pass --cache FILE.sqlite')
        return (f'{folder}: cannot write the generation cache '
                f'{os.path.basename(self.path)} there ({reason}); pass '
                '--cache with a file in a writable folder')

    def _check_location(self) -> None:
        folder = os.path.dirname(self.path)
        if os.path.isdir(self.path):
            raise ValueError(f'{self.path}: is a folder, not a cache file; '
                             'pass --cache FILE.sqlite')
        existing = existing_ancestor(folder)
        if os.path.isdir(existing) and not _writable(existing):
            raise ValueError(self._folder_error(existing, 'read-only folder'))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ValueError(self._folder_error(
                folder, exc.strerror or type(exc).__name__)) from None
        if os.path.exists(self.path) and not _writable(self.path):
            raise ValueError(self._read_only_error())

    def _read_only_error(self) -> str:
        return (f'{self.path}: the cache file is read-only; make it writable '
                '(chmod u+w) or pass --cache NEW.sqlite')

    def _open_error(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if 'readonly' in text or 'read-only' in text:
            return self._read_only_error()
        if 'unable to open' in text:
            return self._folder_error(os.path.dirname(self.path), text)
        if 'locked' in text or 'busy' in text:
            return (f'{self.path}: the cache is locked by another process '
                    f'({text}); wait for it or pass --cache NEW.sqlite')
        return (f'{self.path}: not a readable cache ({text}); move it away '
                'or pass --cache NEW.sqlite')

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        # A cache that breaks during a run (a bad page, a full disk) stops
        # it with one line; what was committed before stays.
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                text = str(exc)
                if 'readonly' in text or 'read-only' in text:
                    raise ValueError(self._read_only_error()) from None
                raise ValueError(
                    f'{self.path}: the generation cache failed ({text}); '
                    'check the file and its disk, or pass --cache '
                    'NEW.sqlite') from None

    def get(self, key: str) -> Optional[CacheEntry]:
        r"""Returns the finished generation stored under :obj:`key`, or
        :obj:`None` (absent, or failed last time)."""
        entry = self.entry(key)
        if entry is None or entry.status != 'ok':
            return None
        return entry

    def entry(self, key: str) -> Optional[CacheEntry]:
        r"""Returns the row under :obj:`key` whatever its status."""
        with self._guard():
            row = self._conn.execute(
                f'SELECT {", ".join(_COLUMNS)} FROM generations WHERE key = ?',
                (key, )).fetchone()
        return None if row is None else CacheEntry(*row)

    def put(self, key: str, *, identity: Mapping[str, Any], task: str,
            subject: str, prompt: str, image_sha256: str = '',
            text: Optional[str] = None, error: Optional[str] = None,
            prompt_tokens: Optional[int] = None,
            completion_tokens: Optional[int] = None,
            seconds: Optional[float] = None, system: Optional[str] = None,
            finish_reason: Optional[str] = None) -> None:
        r"""Commits one outcome: a generation (:obj:`text`) or a failure
        (:obj:`error`, stored with its secrets redacted).  A failure never
        overwrites a finished generation; each generation stored counts in
        :func:`generations_saved`.

        Args:
            key (str): From :func:`generation_key`.
            identity (Mapping): The backend's identity.
            task (str): :obj:`"describe"` or :obj:`"prefer"`.
            subject (str): The item or user id the request was for.
            system (str, optional): The request's system message.
                (default: :obj:`None`)
            finish_reason (str, optional): Why the generation ended
                (:obj:`"stop"`, :obj:`"length"`), where the backend said.
                (default: :obj:`None`)
        """
        if (text is None) == (error is None):
            raise ValueError('Give exactly one of text= and error=')
        status = 'ok' if text is not None else 'failed'
        if error is not None:
            error = redact_secrets(error)
        with self._guard():
            row = self._conn.execute(
                'SELECT status, attempts FROM generations WHERE key = ?',
                (key, )).fetchone()
            if row is not None and row[0] == 'ok' and status == 'failed':
                return
            attempts = (row[1] if row is not None else 0) + 1
            self._conn.execute(
                f'INSERT OR REPLACE INTO generations ({", ".join(_COLUMNS)}) '
                f'VALUES ({", ".join("?" * len(_COLUMNS))})',
                (key, status, str(identity['backend']),
                 str(identity['model']),
                 json.dumps(identity.get('params', {}), sort_keys=True),
                 task, subject, prompt, image_sha256, text, error,
                 prompt_tokens, completion_tokens, seconds, attempts,
                 time.time(), system or None, finish_reason))
        if status == 'ok':
            _count_saved()

    def failures(self, task: Optional[str] = None) -> List[CacheEntry]:
        r"""Returns the rows whose last attempt failed."""
        query = (f'SELECT {", ".join(_COLUMNS)} FROM generations '
                 "WHERE status = 'failed'")
        params: tuple = ()
        if task is not None:
            query += ' AND task = ?'
            params = (task, )
        with self._guard():
            rows = self._conn.execute(query + ' ORDER BY updated',
                                      params).fetchall()
        return [CacheEntry(*row) for row in rows]

    def counts(self) -> Dict[str, int]:
        r"""Returns the number of rows per status."""
        with self._guard():
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
