r"""Files and folders: the nearest existing ancestor of a path to be
created (for the checks that refuse an unwritable place before any work
starts), and writes that never leave half a file."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional


def existing_ancestor(path: str) -> str:
    r"""Returns the nearest folder or file above :obj:`path` (or
    :obj:`path` itself) that exists; a dangling symbolic link counts as
    existing, so it is reported rather than walked past.

    Args:
        path (str): A file or folder that may not exist yet.
    """
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def replace_file(path: str, write: Callable[[str], None]) -> None:
    r"""Writes :obj:`path` through :obj:`write` (called with a temporary
    path beside it), then renames it into place: an interrupted write never
    leaves half a file, and the previous version stays until the new one is
    complete.

    Args:
        path (str): The file to write.
        write (callable): Writes the content to the path it is given.
    """
    tmp = path + '.tmp'
    write(tmp)
    os.replace(tmp, path)


def write_json(path: str, content: Any, default: Optional[Callable[[Any], Any]] = None,
               ensure_ascii: bool = True) -> None:
    r"""Writes :obj:`content` as indented JSON to :obj:`path` with
    :func:`replace_file`.

    Args:
        path (str): The file to write.
        content (Any): JSON-serialisable content.
        default (callable, optional): :func:`json.dump`'s fallback for
            other objects. (default: :obj:`None`, they raise)
        ensure_ascii (bool, optional): Escape non-ASCII characters.
            (default: :obj:`True`)
    """
    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(content, f, indent=2, default=default, ensure_ascii=ensure_ascii)
            f.write('\n')

    replace_file(path, write)


def save_tensors(obj: Any, path: str) -> None:
    r""":func:`torch.save` of :obj:`obj` to :obj:`path` with
    :func:`replace_file`."""
    import torch

    replace_file(path, lambda tmp: torch.save(obj, tmp))
