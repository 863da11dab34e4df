r"""Early stopping on a validation score, with MMRec's semantics."""
from __future__ import annotations

from typing import Union


class EarlyStopping:
    r"""Tracks the best validation score and says when to stop, exactly as
    MMRec's ``utils.early_stopping``: a score counts as an improvement only
    if it is STRICTLY greater than the best so far (ties do not reset the
    counter), and training stops once :obj:`patience` is exceeded, i.e. at
    the :math:`(\text{patience} + 1)`-th consecutive epoch without
    improvement.

    Args:
        patience (int): Epochs without improvement tolerated.
            (default: :obj:`20`)
    """
    def __init__(self, patience: int = 20) -> None:
        if patience < 0:
            raise ValueError(f'patience must be non-negative, got {patience}')
        self.patience = patience
        self.best: float = float('-inf')
        self.best_epoch: int = 0
        self.bad_epochs: int = 0
        self.should_stop: bool = False

    def step(self, score: float, epoch: int) -> bool:
        r"""Records the validation :obj:`score` of :obj:`epoch` and returns
        whether it is a new best."""
        if score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.should_stop = True
        return False

    def state_dict(self) -> dict[str, Union[int, float, bool]]:
        return {'patience': self.patience, 'best': self.best, 'best_epoch': self.best_epoch,
                'bad_epochs': self.bad_epochs, 'should_stop': self.should_stop}

    def load_state_dict(self, state: dict[str, Union[int, float, bool]]) -> None:
        self.patience = int(state['patience'])
        self.best = float(state['best'])
        self.best_epoch = int(state['best_epoch'])
        self.bad_epochs = int(state['bad_epochs'])
        self.should_stop = bool(state['should_stop'])

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(patience={self.patience})'
