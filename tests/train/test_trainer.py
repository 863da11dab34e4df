import csv
import os
import sys

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.nn.models import build_model
from mllmrec_pyg.train import Trainer, seed_everything


def random_data(num_users: int = 30, num_items: int = 40, seed: int = 0) -> HeteroData:
    r"""Every user holds 6 distinct items: 4 training, 1 valid, 1 test."""
    gen = torch.Generator().manual_seed(seed)
    items = torch.stack([torch.randperm(num_items, generator=gen)[:6] for _ in range(num_users)])
    user = torch.arange(num_users).repeat_interleave(6)
    label = torch.tensor([0, 0, 0, 0, 1, 2]).repeat(num_users)
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.stack([user, items.view(-1)])
    store.train_mask, store.val_mask, store.test_mask = label == 0, label == 1, label == 2
    return data


def _trainer(data, out_dir=None, **kwargs):
    seed_everything(7)
    model = build_model('bpr', data, embedding_dim=8, reg_weight=1e-4)
    kwargs.setdefault('max_epochs', 6)
    return Trainer(model, data, lr=0.05, batch_size=32, ks=(5, 10), val_metric='recall@10',
                   seed=3, out_dir=out_dir, progress=False, **kwargs)


def test_fit_reports_the_best_validation_epoch(tmp_path):
    data = random_data()
    trainer = _trainer(data, out_dir=str(tmp_path))
    assert str(trainer) == ('Trainer(BPRMF, lr=0.05, batch_size=32, max_epochs=6, '
                            'patience=20, val_metric=recall@10)')
    result = trainer.fit()
    assert result.epochs_trained == 6 and not result.stopped_early
    scores = [row['val_recall@10'] for row in result.history]
    best = max(range(6), key=lambda i: (scores[i], -i))  # first of the maxima
    assert result.best_epoch == best + 1
    # The restored parameters are the best epoch's: re-evaluating them gives
    # the logged validation score.
    assert result.val['recall@10'] == scores[best]
    assert result.test is not None and result.test.users.numel() == 30
    with open(tmp_path / 'log.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[2]['val_recall@10']) == pytest.approx(scores[2])
    assert os.path.exists(tmp_path / 'checkpoint.pt')


def test_resume_gives_the_uninterrupted_result(tmp_path):
    data = random_data()
    full = _trainer(data).fit()

    _trainer(data, out_dir=str(tmp_path), max_epochs=3).fit()
    resumed_trainer = _trainer(data, out_dir=str(tmp_path))
    resumed = resumed_trainer.fit(resume=True)

    assert resumed.epochs_trained == 6
    assert resumed.best_epoch == full.best_epoch
    assert [r['loss'] for r in resumed.history] == [r['loss'] for r in full.history]
    assert resumed.test is not None and full.test is not None
    assert resumed.test.summary == full.test.summary
    with open(tmp_path / 'log.csv') as f:
        assert [int(r['epoch']) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]

    changed = _trainer(data, out_dir=str(tmp_path))
    changed.lr = 0.01
    with pytest.raises(ValueError, match=r'other settings \(lr: 0.05 -> 0.01\)'):
        changed.fit(resume=True)


def test_early_stopping_stops_after_patience(tmp_path):
    data = random_data()
    # lr 0 never changes the scores: epoch 1 is the best, 2 more epochs are tolerated.
    seed_everything(7)
    model = build_model('bpr', data, embedding_dim=8)
    result = Trainer(model, data, lr=0.0, batch_size=64, ks=(5, ), val_metric='recall@5',
                     patience=2, max_epochs=50, progress=False).fit()
    assert (result.best_epoch, result.epochs_trained, result.stopped_early) == (1, 4, True)


def test_invalid_settings():
    data = random_data()
    model = build_model('bpr', data, embedding_dim=8)
    with pytest.raises(ValueError, match="val_metric 'recall@20' must be"):
        Trainer(model, data, ks=(5, 10))
    with pytest.raises(ValueError, match='max_epochs must be at least 1'):
        Trainer(model, data, max_epochs=0)


@pytest.mark.parametrize('metric', ['foo@10', 'coverage@10', 'recall@20', 'recall'])
def test_unknown_selection_metric_fails_before_training(metric):
    model = build_model('bpr', random_data(), embedding_dim=8)
    with pytest.raises(ValueError, match='must be a per-user metric'):
        Trainer(model, random_data(), ks=(5, 10), val_metric=metric, progress=False)


def test_epoch_bar_only_on_a_terminal(capsys, monkeypatch):
    data = random_data()
    shown = _trainer(data, max_epochs=2)
    shown.progress = True
    shown.fit()  # stderr is captured, not a terminal: no bar
    assert capsys.readouterr().err == ''
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    shown = _trainer(data, max_epochs=2)
    shown.progress = True
    shown.fit()
    err = capsys.readouterr().err
    assert 'BPRMF' in err and '2/2' in err
