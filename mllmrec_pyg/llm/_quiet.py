r"""Scoped silencing of :obj:`transformers`' per-load progress bar."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def no_weight_loading_bar() -> Iterator[None]:
    r"""Hides the "Loading weights" bar :obj:`transformers` prints for every
    model it loads, and restores the previous setting afterwards.

    Used around the small models this package loads itself (the MiniLM
    encoder, SmolLM2), whose loads take well under a second: their bar is
    noise in every command's output. Loads of user-named models (the Hugging
    Face backend) keep the bar, which is useful for large checkpoints.
    """
    try:
        from transformers.utils import logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
