import pytest

from mllmrec_pyg.train import EarlyStopping


def test_strict_improvement_and_patience():
    stopper = EarlyStopping(patience=2)
    assert str(stopper) == 'EarlyStopping(patience=2)'
    assert stopper.step(0.1, 1) is True
    assert stopper.step(0.2, 2) is True
    # A tie is not an improvement: the counter keeps running.
    assert stopper.step(0.2, 3) is False
    assert stopper.step(0.15, 4) is False
    assert not stopper.should_stop  # 2 bad epochs: patience not exceeded yet
    assert stopper.step(0.2, 5) is False
    assert stopper.should_stop  # the 3rd consecutive bad epoch stops (MMRec)
    assert (stopper.best, stopper.best_epoch) == (0.2, 2)


def test_improvement_resets_the_counter_and_state_roundtrip():
    stopper = EarlyStopping(patience=1)
    for epoch, score in enumerate([0.3, 0.2, 0.31, 0.1], start=1):
        stopper.step(score, epoch)
    assert (stopper.best_epoch, stopper.bad_epochs, stopper.should_stop) == (3, 1, False)
    restored = EarlyStopping()
    restored.load_state_dict(stopper.state_dict())
    assert restored.state_dict() == stopper.state_dict()
    with pytest.raises(ValueError, match='patience must be non-negative'):
        EarlyStopping(-1)
