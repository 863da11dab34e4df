import os
import pathlib

import pytest

#: The real data of this workplace, beside the project (see its README).
SHARED_DATA = pathlib.Path(
    os.environ.get('MLLMREC_SHARED_DATA',
                   pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data'))


def shared_dataset(name: str) -> pathlib.Path:
    r"""Returns ``../shared/data/<name>`` or skips the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f'real dataset {path} is absent (it lives in ../shared/data '
                    'beside the project; see the README)')
    return path


@pytest.fixture(autouse=True, scope='session')
def _one_thread_torch():
    # Two cores: keep torch from oversubscribing when generating/encoding.
    import torch
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    # Processed files and caches of a test never touch the user's cache nor
    # another test's.
    monkeypatch.setenv('MLLMREC_HOME', str(tmp_path / 'mllmrec_home'))
    yield


@pytest.fixture
def epochs(monkeypatch):
    r"""Counts training epochs (:meth:`Trainer.train_epoch` calls), whoever
    runs them: ``epochs['n']``."""
    from mllmrec_pyg.train import Trainer

    counter = {'n': 0}
    original = Trainer.train_epoch

    def counted(self):
        counter['n'] += 1
        return original(self)

    monkeypatch.setattr(Trainer, 'train_epoch', counted)
    return counter
