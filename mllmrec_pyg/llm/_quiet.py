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


@contextmanager
def no_stderr_bars() -> Iterator[None]:
    r"""Routes :obj:`sys.stderr` to a buffer for a block whose libraries
    draw raw :obj:`tqdm` bars that no setting hides (the GGUF
    de-quantisation and shard writing of :obj:`transformers`); on an error
    the buffer is written out before the exception propagates, so nothing
    useful is lost."""
    import io
    import sys
    from contextlib import redirect_stderr

    buffer = io.StringIO()
    try:
        with redirect_stderr(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise
