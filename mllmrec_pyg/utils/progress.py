r"""Progress bars of the long stages (neighbour searches, Jaccard blocks,
encoding, generation, training): shown when asked AND the output is a
terminal, hidden otherwise."""
from __future__ import annotations

from typing import Any


def progress_bar(total: int, desc: str, enabled: bool, unit: str = 'it',
                 delay: float = 0.0, leave: bool = False,
                 initial: int = 0) -> Any:
    r"""A :class:`tqdm.tqdm` bar of :obj:`total` steps that stays hidden
    unless :obj:`enabled` and standard error is a terminal (tqdm's
    :obj:`disable=None`), and disappears when closed.

    Args:
        total (int): The number of steps.
        desc (str): The label.
        enabled (bool): Whether the caller asked for progress.
        unit (str, optional): The step unit. (default: :obj:`'it'`)
        delay (float, optional): Seconds before the bar appears (a short
            task prints nothing). (default: :obj:`0.0`)
        leave (bool, optional): Keep the finished bar on screen.
            (default: :obj:`False`)
        initial (int, optional): Steps already done (a resumed run).
            (default: :obj:`0`)
    """
    import sys

    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, delay=delay,
                initial=initial, disable=None if enabled else True,
                file=sys.stderr, dynamic_ncols=True)
