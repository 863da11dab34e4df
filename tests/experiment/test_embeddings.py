import json
from pathlib import Path

import matplotlib.image
import pytest
import torch

from mllmrec_pyg.data import load_dataset, split_edge_index, train_edge_index
from mllmrec_pyg.experiment import build_config, run_experiment
from mllmrec_pyg.experiment.embeddings import (
    PANEL_SIZE,
    embedding_table,
    plot_user_tsne,
    read_runs,
    sample_users,
    write_embedding_plot,
)
from mllmrec_pyg.experiment.plots import DPI
from mllmrec_pyg.experiment.runner import EVALUATE_OUTPUTS
from mllmrec_pyg.metrics import EvaluationResult

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'


def _run(tmp_path, name, model='bpr', path=SYNTHETIC):
    config = build_config(path, model=model, overrides=['train.max_epochs=2'])
    return run_experiment(path, config, str(tmp_path / name), progress=False)


def _by_hand(user, item, pairs):
    # Alignment and uniformity written out pair by pair.
    user = user.double() / user.double().norm(dim=1, keepdim=True)
    item = item.double() / item.double().norm(dim=1, keepdim=True)
    pairs = sorted(set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True)))
    align = sum(float((user[u] - item[i]).pow(2).sum()) for u, i in pairs) / len(pairs)

    def uniform(x):
        terms = [float(torch.exp(-2 * (x[a] - x[b]).pow(2).sum()))
                 for a in range(len(x)) for b in range(a + 1, len(x))]
        return float(torch.tensor(sum(terms) / len(terms), dtype=torch.float64).log())

    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    return align, uniform(user[users]), uniform(item[items])


def test_evaluate_stage_writes_representations_and_their_metrics(tmp_path):
    result = _run(tmp_path, 'lightgcn', 'lightgcn')
    out = tmp_path / 'lightgcn'
    assert 'representations.pt' in EVALUATE_OUTPUTS
    saved = torch.load(out / 'representations.pt', weights_only=True)
    result.model.eval()
    with torch.no_grad():
        user, item = result.model.embed()
    assert saved['user'].dtype == saved['item'].dtype == torch.float32
    assert saved['user'].shape == user.shape == (40, 64)
    assert saved['item'].shape == item.shape == (30, 64)
    assert torch.equal(saved['user'], user.cpu()) and torch.equal(saved['item'], item.cpu())
    data = load_dataset(SYNTHETIC)
    assert torch.equal(saved['user_num_train'],
                       torch.bincount(train_edge_index(data)[0], minlength=40))

    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['representation'] == result.metrics['representation']
    for split in ('val', 'test'):
        block = metrics['representation'][split]
        pairs = split_edge_index(data, split)
        align, unif_user, unif_item = _by_hand(saved['user'], saved['item'], pairs)
        assert block['alignment'] == pytest.approx(align, rel=1e-12)
        assert block['uniformity_user'] == pytest.approx(unif_user, rel=1e-12)
        assert block['uniformity_item'] == pytest.approx(unif_item, rel=1e-12)
        assert block['uniformity'] == pytest.approx((unif_user + unif_item) / 2, rel=1e-12)
        assert block['num_pairs'] == len(set(zip(*pairs.tolist(), strict=True)))
        assert 0.0 < block['alignment'] < 4.0 and -8.0 < block['uniformity'] < 0.0
    report = (out / 'report.md').read_text()
    test = metrics['representation']['test']
    assert (f"| test | {test['alignment']:.4f} | {test['uniformity_user']:.4f} | "
            f"{test['uniformity_item']:.4f} | {test['uniformity']:.4f} | "
            f"{test['num_pairs']} |") in report

    # A run folder without the file re-evaluates, without training.
    (out / 'representations.pt').unlink()
    again = _run(tmp_path, 'lightgcn', 'lightgcn')
    assert 'train' in again.stages_skipped and 'evaluate' in again.stages_run
    assert torch.equal(torch.load(out / 'representations.pt', weights_only=True)['user'],
                       saved['user'])


def test_plot_user_tsne_one_panel_per_run(tmp_path):
    _run(tmp_path, 'bpr')
    _run(tmp_path, 'lightgcn', 'lightgcn')
    runs = [str(tmp_path / 'bpr'), str(tmp_path / 'lightgcn')]
    width, height = (int(size * DPI) for size in PANEL_SIZE)
    for dirs in (runs, runs[:1]):
        png = tmp_path / f'tsne_{len(dirs)}.png'
        read = plot_user_tsne(dirs, str(png), max_users=20, perplexity=5)
        assert [r.run.model for r in read] == ['bpr', 'lightgcn'][:len(dirs)]
        assert matplotlib.image.imread(str(png)).shape[:2] == (height, width * len(dirs))

    # The same seeded users in every panel, drawn among the evaluated ones.
    read = read_runs(runs)
    evaluated = EvaluationResult.load(runs[0] + '/per_user_test.npz').users
    sample = sample_users(read, max_users=10, seed=3)
    assert sample.numel() == 10 and torch.isin(sample, evaluated).all()
    assert torch.equal(sample, sample_users(read, max_users=10, seed=3))
    assert not torch.equal(sample, sample_users(read, max_users=10, seed=4))
    assert torch.equal(sample_users(read, max_users=1000), torch.sort(evaluated).values)

    table = embedding_table(runs).splitlines()
    assert table[0] == ('| run | model | test R@20 | alignment | uniformity (users) | '
                        'uniformity (items) | uniformity |')
    for line, run in zip(table[2:4], runs, strict=True):
        metrics = json.loads(Path(run, 'metrics.json').read_text())
        block = metrics['representation']['test']
        assert line == (f"| {run.split('/')[-1]} | {metrics['model']} | "
                        f"{metrics['test']['recall@20']:.4f} | {block['alignment']:.4f} | "
                        f"{block['uniformity_user']:.4f} | {block['uniformity_item']:.4f} | "
                        f"{block['uniformity']:.4f} |")
    val = embedding_table(runs, split='val').splitlines()
    block = json.loads(Path(runs[0], 'metrics.json').read_text())['representation']['val']
    assert val[0].startswith('| run | model | val R@20 |')
    assert f"| {block['alignment']:.4f} |" in val[2]

    md, png = write_embedding_plot(runs, str(tmp_path / 'out' / 'emb.png'), perplexity=5)
    assert (md, png) == (str(tmp_path / 'out' / 'emb.md'), str(tmp_path / 'out' / 'emb.png'))
    assert Path(md).read_text() == embedding_table(runs) + '\n![t-SNE of the test users per ' \
        'run](emb.png)\n'


def test_plot_errors(tmp_path):
    _run(tmp_path, 'bpr')
    run = str(tmp_path / 'bpr')
    png = str(tmp_path / 'tsne.png')
    with pytest.raises(ValueError, match=r'--perplexity 40: must lie in \(0, 40\), below '
                       r'the 40 users plotted; lower it'):
        plot_user_tsne([run], png, perplexity=40)
    with pytest.raises(ValueError, match="--split train: not a split; use 'test' or 'val'"):
        plot_user_tsne([run], png, split='train')
    _run(tmp_path, 'other', path='synthetic:users=40,items=30,seed=6')
    with pytest.raises(ValueError, match=r'cannot compare .*bpr and .*other: different '
                       r'datasets'):
        plot_user_tsne([run, str(tmp_path / 'other')], png, perplexity=5)
    (tmp_path / 'bpr' / 'representations.pt').unlink()
    with pytest.raises(ValueError, match=r'bpr/representations.pt: not found \(the run '
                       r'predates it\); rerun the run with --force evaluate'):
        plot_user_tsne([run], png)
    (tmp_path / 'bpr' / 'representations.pt').write_bytes(b'not a tensor file')
    with pytest.raises(ValueError, match=r'representations.pt: not a readable '
                       r'representations file'):
        plot_user_tsne([run], png)
    with pytest.raises(FileNotFoundError, match='nothing: not a folder'):
        plot_user_tsne([str(tmp_path / 'nothing')], png)
