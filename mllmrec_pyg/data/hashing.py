r"""Content hashing for processed files and caches: a key changes whenever
any byte of the inputs or any parameter changes, so nothing goes stale."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping


def hash_files(paths: Iterable[str | os.PathLike], chunk_size: int = 1 << 20) -> str:
    r"""Returns the SHA-256 hex digest of the names and contents of
    :obj:`paths` (in the order given)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(os.fspath(path)).encode())
        digest.update(b'\0')
        with open(path, 'rb') as f:
            while chunk := f.read(chunk_size):
                digest.update(chunk)
        digest.update(b'\0')
    return digest.hexdigest()


def hash_params(params: Mapping[str, Any]) -> str:
    r"""Returns the SHA-256 hex digest of a JSON-serialisable parameter
    mapping (key order does not matter)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def mllmrec_home() -> str:
    r"""Returns the folder for processed datasets and caches:
    :obj:`$MLLMREC_HOME`, else :obj:`~/.cache/mllmrec_pyg`."""
    path = os.environ.get('MLLMREC_HOME') or os.path.join(
        os.path.expanduser('~'), '.cache', 'mllmrec_pyg')
    return path
