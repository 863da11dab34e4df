r"""FREEDOM and SOIL with MLLMRec's refined item graph plugged in (+GR)."""
import subprocess
import sys
import textwrap

import pytest
import torch

from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.metrics import Evaluator
from mllmrec_pyg.nn.models import FREEDOM, SOIL
from mllmrec_pyg.train import Trainer
from mllmrec_pyg.transforms import RefineItemGraph

SPEC = 'synthetic:users=60,items=40,seed=1'


def _data():
    data = load_dataset(SPEC)
    generator = torch.Generator().manual_seed(0)
    data['item'].x = torch.randn(40, 16, generator=generator)
    return data


def _popularity_recall(data):
    evaluator = Evaluator(data, ks=(20, ))
    popularity = evaluator.popularity.float()
    return evaluator.evaluate((torch.ones(60, 1), torch.log1p(popularity).view(-1, 1)),
                              splits=('val', ))['val']['recall@20']


@pytest.mark.parametrize('cls', [FREEDOM, SOIL])
def test_plus_gr_training_beats_popularity(cls):
    data = RefineItemGraph(knn_k=5, alpha=0.2, jaccard_k=5)(_data())
    torch.manual_seed(0)
    kwargs = {'batch_size': 128, 'seed': 0} if cls is FREEDOM else {}
    model = cls.from_data(data, item_graph='data', **kwargs)
    assert model.item_graph == 'data'
    trainer = Trainer(model, data, max_epochs=5, lr=0.01, batch_size=128, progress=False)
    trainer.fit()
    best = max(row['val_recall@20'] for row in trainer.history)
    pop = _popularity_recall(data)
    assert best > pop + 0.1, (best, pop)


_PRUNE = textwrap.dedent('''
    import sys, torch
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.nn.models import FREEDOM
    data = load_dataset(sys.argv[1])
    data['item'].x = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(int(sys.argv[2]))  # differs per process: plays no part
    model = FREEDOM.from_data(data, dropout=0.5, seed=11, embedding_dim=4, feat_embed_dim=4)
    print(';'.join(str(model.resample().tolist()) for _ in range(3)))
''')


def test_two_processes_with_one_seed_prune_identically(tmp_path, monkeypatch):
    # What every rank of a multi-process run relies on: the pruning draws come
    # from the model's own seeded generator, not from the process's RNG.
    monkeypatch.setenv('MLLMREC_HOME', str(tmp_path))
    load_dataset(SPEC)  # built once, then read by both processes
    outs = [subprocess.run([sys.executable, '-c', _PRUNE, SPEC, str(seed)], check=True,
                           capture_output=True, text=True).stdout for seed in (1, 2)]
    assert outs[0] == outs[1] and outs[0].count(';') == 2
    data = _data()
    torch.manual_seed(99)
    model = FREEDOM.from_data(data, dropout=0.5, seed=11, embedding_dim=4, feat_embed_dim=4)
    assert ';'.join(str(model.resample().tolist()) for _ in range(3)) == outs[0].strip()
