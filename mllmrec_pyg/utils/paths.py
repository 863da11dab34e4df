r"""Where a file or folder could be created: the nearest existing ancestor,
for the checks that refuse an unwritable place before any work starts
(the run folder, the generation cache)."""
from __future__ import annotations

import os


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
