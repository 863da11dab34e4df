r"""Training and evaluation under :mod:`torch.distributed` (gloo, CPU): two
processes give the single-process results.

Evaluation is exact (every chunk of users is ranked as one process ranks
it).  Training agrees up to float rounding: DDP sums the two ranks'
gradients (and the shards' losses) in another order than one process sums
the rows of a batch, so the parameters after three epochs agree to
:obj:`RTOL` relative, not bit for bit.
"""
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import torch

from mllmrec_pyg import distributed
from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.metrics import Evaluator
from mllmrec_pyg.nn.models import ITEM_SIMILAR, build_model
from mllmrec_pyg.train import Trainer, seed_everything

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'
WORLD = 2
#: Parameters after training: 2 processes vs 1, relative to the largest entry.
RTOL = 1e-5
#: MLLMRec's last item layer bias shifts every item alike: BPR's score
#: differences cancel it, so its gradient is rounding noise that Adam scales
#: up to full steps, in both runs alike but not the same noise.
NO_GRADIENT = {'item_mlp.2.bias'}
#: Seconds before a stuck worker fails the test.
TIMEOUT = 120


def test_shard_bounds():
    assert [distributed.shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [distributed.shard_bounds(2, r, 3) for r in range(3)] == [(0, 1), (1, 2), (2, 2)]
    assert distributed.shard_bounds(7) == (0, 7)  # no process group


def test_helpers_without_a_process_group():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.is_main_process()
    distributed.barrier()
    x = torch.arange(3)
    assert distributed.all_gather_cat(x) is x
    assert distributed.broadcast_object({'a': 1}) == {'a': 1}
    assert distributed.init_distributed() is False  # WORLD_SIZE unset


def test_loss_couples_batch():
    from mllmrec_pyg.nn.models import SOIL, LightGCN
    from mllmrec_pyg.train.trainer import loss_couples_batch

    class Declared(torch.nn.Module):
        loss_couples_batch = True

    # Declared by the model class: SOIL's in-batch InfoNCE couples the rows.
    assert SOIL.loss_couples_batch and loss_couples_batch(Declared())
    assert not getattr(LightGCN, 'loss_couples_batch', False)
    assert not loss_couples_batch(torch.nn.Linear(1, 1))


def _data(model: str):
    data = load_dataset(SYNTHETIC)
    if model == 'mllmrec':
        from mllmrec_pyg.pipeline import mean_of_training_items
        from mllmrec_pyg.transforms import RefineItemGraph

        data['item'].x = torch.randn(data['item'].num_nodes, 16,
                                     generator=torch.Generator().manual_seed(0))
        data['user'].x = mean_of_training_items(data, data['item'].x)
        built = RefineItemGraph(knn_k=5, jaccard_k=5)(data)
        for name, value in built[ITEM_SIMILAR].items():
            data[ITEM_SIMILAR][name] = value
    return data


#: FREEDOM with reg_weight 0 leaves its projections without gradient (DDP's
#: find_unused_parameters); SOIL's in-batch InfoNCE is computed whole.
MODEL_ARGUMENTS = {'lightgcn': {}, 'mllmrec': {'hidden_channels': 16, 'out_channels': 8},
                   'freedom': {'reg_weight': 0.0}, 'soil': {}}


def _model(name: str, data):
    seed_everything(2024)
    return build_model(name, data, **MODEL_ARGUMENTS[name])


def _evaluate(model, data):
    # Chunks of 8 users: 5 chunks, 3 + 2 per rank; of 1024: rank 1 has none.
    out = {}
    for batch_size in (8, 1024):
        result = Evaluator(data, batch_size=batch_size).evaluate(model)
        out.update({(split, batch_size): (r.summary, r.per_user, r.users, r.topk)
                    for split, r in result.items()})
    return out


def _train(name: str, data, batch_size: int):
    model = _model(name, data)
    trainer = Trainer(model, data, batch_size=batch_size, max_epochs=3, patience=100,
                      eval_batch_size=8, progress=False)
    result = trainer.fit()
    # The last epoch's parameters (fit() restores the best epoch's).
    last = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    return {'best': last, 'loss': [row['loss'] for row in result.history],
            'val': [{k: v for k, v in row.items() if k.startswith('val_')}
                    for row in result.history],
            'best_epoch': result.best_epoch}


def _cases():
    # Batch 45: unequal shards (23 + 22) and a short last batch; 64: equal;
    # 39: the last of the 352 training rows is a batch of one, rank 1's
    # shard of it is empty.
    return [(name, batch_size) for name in ('lightgcn', 'mllmrec') for batch_size in (45, 64)
            ] + [('lightgcn', 39), ('freedom', 45), ('soil', 45)]


def _run_all(datasets):
    out = {}
    for name in ('lightgcn', 'mllmrec'):
        data = datasets[name]
        out[(name, 'eval')] = _evaluate(_model(name, data), data)
    for name, batch_size in _cases():
        out[(name, batch_size)] = _train(name, datasets[name], batch_size)
    return out


def _worker(rank: int, port: int, datasets, folder: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_distributed(timeout=timedelta(seconds=TIMEOUT))
    try:
        out = _run_all(datasets)
        torch.save(out, os.path.join(folder, f'rank{rank}.pt'))
    finally:
        distributed.destroy_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _spawn(datasets, folder):
    import torch.multiprocessing as mp
    context = mp.spawn(_worker, args=(_free_port(), datasets, str(folder)), nprocs=WORLD,
                       join=False)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not context.join(timeout=max(deadline - time.monotonic(), 0)):
            if time.monotonic() >= deadline:
                raise TimeoutError(f'the {WORLD} workers did not finish in {TIMEOUT} s')
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(folder / f'rank{r}.pt', weights_only=False) for r in range(WORLD)]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_two_processes_match_one(tmp_path):
    datasets = {name: _data(name) for name in ('lightgcn', 'mllmrec')}
    datasets['freedom'] = datasets['soil'] = datasets['mllmrec']  # item features
    single = _run_all(datasets)
    ranks = _spawn(datasets, tmp_path)

    for name in ('lightgcn', 'mllmrec'):
        # (1) Same weights: identical evaluation, exactly, on every rank.
        for split, (summary, per_user, users, topk) in single[(name, 'eval')].items():
            for out in ranks:
                got = out[(name, 'eval')][split]
                assert got[0] == summary
                assert torch.equal(got[2], users) and torch.equal(got[3], topk)
                assert all(torch.equal(got[1][k], v) for k, v in per_user.items())

    for case in _cases():
        one, two = single[case], ranks[0][case]
        # Every rank holds the same model and took the same decisions.
        assert ranks[1][case]['loss'] == two['loss']
        assert ranks[1][case]['val'] == two['val']
        for k, v in ranks[1][case]['best'].items():
            assert torch.equal(v, two['best'][k])
        # (2) Trained models: the single-process ones up to rounding.
        assert two['loss'] == pytest.approx(one['loss'], rel=RTOL)
        for k, v in one['best'].items():
            if v.is_floating_point() and k not in NO_GRADIENT:
                assert _relative(two['best'][k], v) < RTOL, (case, k)


def _losses(folder):
    import csv
    with open(folder / 'log.csv', newline='') as f:
        return [float(row['loss']) for row in csv.DictReader(f)]


def test_torchrun_cli_matches_one_process(tmp_path):
    from mllmrec_pyg.experiment import build_config, run_experiment

    settings = ['train.eval_batch_size=8', 'train.batch_size=45']
    single = run_experiment(SYNTHETIC, build_config(SYNTHETIC, model='lightgcn',
                                                    overrides=[*settings,
                                                               'train.max_epochs=2']),
                            str(tmp_path / 'one'), progress=False, device='cpu')
    out = tmp_path / 'two'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}

    def torchrun(epochs, *extra):
        command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                   f'--nproc_per_node={WORLD}', '-m', 'mllmrec_pyg', 'train', SYNTHETIC,
                   '--model', 'lightgcn', '--out', str(out), '--device', 'cpu',
                   '--no-progress', '--set', f'train.max_epochs={epochs}', *extra,
                   *[a for s in settings for a in ('--set', s)]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                              env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    # One epoch, then --resume to two: every rank reads rank 0's checkpoint
    # and the run ends where one uninterrupted process ends.
    assert torchrun(1).stdout.count('best epoch') == 1  # rank 0 alone speaks
    assert len(_losses(out)) == 1
    torchrun(2, '--resume')
    # Rank 0 alone wrote the run folder: the single-process files, no more.
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / 'one'))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['best_epoch'] == single.metrics['best_epoch']
    assert metrics['epochs_trained'] == 2
    assert _losses(out) == pytest.approx(_losses(tmp_path / 'one'), rel=RTOL)
    assert metrics['test'] == pytest.approx(single.metrics['test'], abs=1e-6)
    assert (out / 'topk_test.tsv').read_text() == (tmp_path / 'one' /
                                                    'topk_test.tsv').read_text()
