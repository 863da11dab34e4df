r"""Stages with content-keyed outputs.

Every stage of an experiment (describe, prefer, encode, graph, train,
evaluate, report) is keyed by the hash of its inputs and settings, the keys
of the stages it reads included.  A run folder records the key each stage
last finished with in ``stages.json``; a stage whose key and output files
are unchanged is skipped, so a second identical run makes no LLM call and
trains nothing.  Forcing a stage also reruns every stage after it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor

#: The stages of ``mllmrec run``, in order.
STAGES = ('describe', 'prefer', 'encode', 'graph', 'train', 'evaluate', 'report')


def content_key(*parts: Any) -> str:
    r"""The SHA-256 hex digest of :obj:`parts`: tensors by their dtype,
    shape and bytes, everything else as sorted-key JSON."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Tensor):
            t = part.detach().cpu().contiguous()
            digest.update(f'tensor:{t.dtype}:{list(t.shape)}:'.encode())
            digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16
                          else t.float().numpy().tobytes())
        elif part is None:
            digest.update(b'none')
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b'\0')
    return digest.hexdigest()


def file_key(path: Optional[str]) -> Optional[str]:
    r"""The SHA-256 of a file's bytes (:obj:`None` for no file)."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class StageStore:
    r"""The record of finished stages of one run folder.

    Args:
        root (str): The run folder.
        force (Sequence[str], optional): Stages to rerun whatever their key
            (each forces the stages after it too). (default: :obj:`()`)
        log (callable, optional): Prints what is skipped and why.
            (default: :obj:`None`, silent)
    """
    FILE = 'stages.json'

    def __init__(self, root: str, force: Sequence[str] = (), log: Any = None) -> None:
        unknown = [s for s in force if s not in STAGES]
        if unknown:
            raise ValueError(f"--force: unknown stage(s) {unknown} (stages: "
                             f"{', '.join(STAGES)})")
        self.root = root
        self.forced = {s for s in STAGES if any(STAGES.index(s) >= STAGES.index(f)
                                                for f in force)}
        self.log = log
        self.skipped: List[str] = []
        self.ran: List[str] = []
        os.makedirs(root, exist_ok=True)
        self._records: Dict[str, Dict[str, Any]] = {}
        path = os.path.join(root, self.FILE)
        if os.path.exists(path):
            try:
                with open(path, encoding='utf-8') as f:
                    self._records = dict(json.load(f))
            except (json.JSONDecodeError, TypeError, ValueError):
                self._records = {}  # unreadable: every stage reruns

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def record(self, stage: str) -> Optional[Dict[str, Any]]:
        return self._records.get(stage)

    def is_fresh(self, stage: str, key: str, outputs: Iterable[str] = ()) -> bool:
        r"""Whether :obj:`stage` last finished with :obj:`key` and all of
        :obj:`outputs` (paths relative to the run folder) still exist; a
        fresh stage is counted as skipped."""
        record = self._records.get(stage)
        fresh = (stage not in self.forced and record is not None
                 and record.get('key') == key
                 and all(os.path.exists(self.path(p)) for p in outputs))
        if fresh:
            self.skipped.append(stage)
            if self.log is not None:
                self.log(f'{stage}: up to date (key {key[:12]}), skipped')
        return fresh

    def invalidate(self, stage: str) -> None:
        r"""Forgets :obj:`stage` (called before it runs, so an interrupted
        stage is never taken for finished)."""
        if self._records.pop(stage, None) is not None:
            self._write()

    def finish(self, stage: str, key: str, **info: Any) -> None:
        r"""Records that :obj:`stage` finished with :obj:`key`."""
        self._records[stage] = {'key': key, 'finished': time.strftime(
            '%Y-%m-%dT%H:%M:%S'), **info}
        self.ran.append(stage)
        self._write()

    def _write(self) -> None:
        tmp = self.path(self.FILE + '.tmp')
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(self._records, f, indent=2, default=str)
            f.write('\n')
        os.replace(tmp, self.path(self.FILE))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.root}, finished='
                f'{[s for s in STAGES if s in self._records]})')
