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
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor

from mllmrec_pyg.utils.paths import existing_ancestor, save_tensors, write_json

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


def _is_writable_folder(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def check_out_dir(path: str, what: str = '--out') -> None:
    r"""Checks, without creating anything, that the run folder :obj:`path`
    is a writable folder or can be created as one: an existing file, a
    read-only folder or a parent that cannot be created is a one-line
    :class:`ValueError` naming the path, raised before any work starts."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f'{what} {path}: is an existing file, not a folder; name a '
                         'folder (a new one or a run folder)')
    if os.path.isdir(path):
        if not _is_writable_folder(path):
            raise ValueError(f'{what} {path}: the folder is not writable; name a writable '
                             'folder or fix its permissions')
        return
    ancestor = existing_ancestor(path)
    if not os.path.isdir(ancestor):
        raise ValueError(f'{what} {path}: cannot create the folder, {ancestor} is a file; '
                         'name a folder whose parents are folders')
    if not _is_writable_folder(ancestor):
        raise ValueError(f'{what} {path}: cannot create the folder, {ancestor} is not '
                         'writable; name a folder in a writable place')


def make_out_dir(path: str, what: str = '--out') -> None:
    r""":func:`check_out_dir`, then creates the folder."""
    check_out_dir(path, what)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f'{what} {path}: cannot create the folder ({exc.strerror}); name '
                         'a folder in a writable place') from exc


class UnreadableStageFile(ValueError):
    r"""A stage output that exists but cannot be read back."""


def load_stage_file(path: str) -> Any:
    r"""Loads a stage's tensor file, or raises :class:`UnreadableStageFile`
    when it is corrupt or truncated (a missing or forbidden file raises its
    :class:`OSError`)."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise
    except Exception as exc:  # RuntimeError, KeyError, EOFError, OSError(EINVAL), ...
        raise UnreadableStageFile(f'{path} is corrupt or truncated') from exc


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
        make_out_dir(root)
        self._records: Dict[str, Dict[str, Any]] = {}
        path = os.path.join(root, self.FILE)
        if os.path.exists(path):
            try:
                with open(path, encoding='utf-8') as f:
                    records = json.load(f)
                if not isinstance(records, dict) or not all(
                        isinstance(r, dict) for r in records.values()):
                    raise ValueError('not a mapping of stage records')
                self._records = dict(records)
            except (json.JSONDecodeError, TypeError, ValueError):
                # Unreadable: every stage reruns.
                self.warn(f'{path} is unreadable; every stage reruns')
                self._records = {}

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

    def warn(self, message: str) -> None:
        r"""Says :obj:`message` as a one-line warning (through :obj:`log`,
        else :func:`warnings.warn`)."""
        if self.log is not None:
            self.log(f'warning: {message}')
        else:
            warnings.warn(message, stacklevel=3)

    def stale(self, stage: str, why: str) -> None:
        r"""Takes back a skip of :obj:`stage` whose outputs turned out
        unreadable (:obj:`why`), with a one-line warning: the stage reruns."""
        if stage in self.skipped:
            self.skipped.remove(stage)
        self.warn(f'{stage}: {why}; rerunning the stage')
        self.invalidate(stage)

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

    def save_output(self, file: str, obj: Any) -> None:
        r"""Saves a stage's tensor output :obj:`obj` (:func:`torch.save`) to
        :obj:`file`, a path relative to the run folder, whole or not at all."""
        path = self.path(file)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_tensors(obj, path)

    def _write(self) -> None:
        write_json(self.path(self.FILE), self._records, default=str)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.root}, finished='
                f'{[s for s in STAGES if s in self._records]})')
