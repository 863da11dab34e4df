import csv

from mllmrec_pyg.nn.models import build_model
from mllmrec_pyg.train import grid_search
from tests.train.test_trainer import random_data


def test_picks_by_validation_and_writes_the_table(tmp_path):
    data = random_data()
    path = tmp_path / 'grid.csv'
    out = grid_search(lambda **p: build_model('bpr', data, embedding_dim=8, **p), data,
                      {'reg_weight': [1e-4, 1.0]}, lr=0.05, batch_size=64, max_epochs=3,
                      ks=(5, 10), val_metric='recall@10', table_path=str(path),
                      progress=False)
    scores = [row['val_recall@10'] for row in out.rows]
    assert out.best_index == max(range(2), key=lambda i: (scores[i], -i))
    assert out.best_params == {'reg_weight': [1e-4, 1.0][out.best_index]}
    assert out.best_result.val['recall@10'] == scores[out.best_index]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r['reg_weight'] for r in rows] == ['0.0001', '1.0']
    assert [int(r['selected']) for r in rows] == [int(i == out.best_index) for i in range(2)]
    assert 'test_recall@10' in rows[0] and 'val_ndcg@5' in rows[0]


def test_resume_continues_capped_runs(tmp_path):
    data = random_data()

    def search(max_epochs, resume):
        return grid_search(lambda **p: build_model('bpr', data, embedding_dim=8, **p), data,
                           {'reg_weight': [1e-4]}, lr=0.05, batch_size=64,
                           max_epochs=max_epochs, ks=(5, 10), val_metric='recall@10',
                           out_dir=str(tmp_path / 'grid'), resume=resume, progress=False)

    straight = grid_search(lambda **p: build_model('bpr', data, embedding_dim=8, **p), data,
                           {'reg_weight': [1e-4]}, lr=0.05, batch_size=64, max_epochs=5,
                           ks=(5, 10), val_metric='recall@10', progress=False)
    search(2, resume=False)
    resumed = search(5, resume=True).best_result
    # Two epochs, then three more from the checkpoint: the same as five at once.
    assert resumed.epochs_trained == 5
    assert [row['loss'] for row in resumed.history] == \
        [row['loss'] for row in straight.best_result.history]
    # The first epochs really come from the checkpoint (marked here), and
    # resume=False starts over.
    import torch
    path = tmp_path / 'grid' / 'run_0' / 'checkpoint.pt'
    state = torch.load(path, weights_only=False)
    state['history'][0]['loss'] = 123.0
    torch.save(state, path)
    assert search(6, resume=True).best_result.history[0]['loss'] == 123.0
    assert search(6, resume=False).best_result.history[0]['loss'] != 123.0
