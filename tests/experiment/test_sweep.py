import csv
import json

import pytest

from mllmrec_pyg.experiment import build_config, run_sweep
from mllmrec_pyg.experiment import sweep as sweep_module
from mllmrec_pyg.experiment.sweep import parse_axis

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'
AXES = {'graph.alpha': [0.3, 0.6], 'graph.jaccard_k': [2, 4]}


def _config(*overrides):
    return build_config(SYNTHETIC, model='mllmrec',
                        overrides=['train.max_epochs=2', 'model.hidden_channels=16',
                                   'model.out_channels=8', *overrides])


@pytest.fixture
def searches(monkeypatch):
    r"""Counts the k-NN and Jaccard searches the transforms run."""
    from mllmrec_pyg.transforms import jaccard_cooccurrence, threshold_knn

    counter = {'knn': 0, 'jaccard': 0}

    def counting(module, name, kind):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            counter[kind] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)

    counting(threshold_knn, 'cosine_topk', 'knn')
    counting(jaccard_cooccurrence, 'jaccard_topk', 'jaccard')
    return counter


def test_parse_axis():
    assert parse_axis('graph.alpha=0.4, 0.5') == ('graph.alpha', [0.4, 0.5])
    assert parse_axis('graph.alpha=None,0.5') == ('graph.alpha', [None, 0.5])
    assert parse_axis('model.user_init=features,id') == ('model.user_init',
                                                         ['features', 'id'])
    with pytest.raises(ValueError, match='expected SECTION.KEY=V1,V2'):
        parse_axis('alpha=0.4')
    with pytest.raises(ValueError, match="not 'dataset' .the dataset and its split are fixed"):
        parse_axis('dataset.split=a,b')
    with pytest.raises(ValueError, match='listed twice'):
        parse_axis('graph.jaccard_k=5,5')


def test_grid_shares_searches_selects_on_validation_and_writes_the_folder(
        tmp_path, searches, epochs):
    out = tmp_path / 'sweep'
    result = run_sweep(SYNTHETIC, _config(), AXES, str(out), progress=False)
    # One k-NN search for both alphas and one Jaccard search (for K_c 4,
    # cut to 2) for the four points.
    assert searches == {'knn': 1, 'jaccard': 1}
    assert epochs['n'] == 4 * 2 and result.points_run == 4
    assert [(r['graph.alpha'], r['graph.jaccard_k']) for r in result.rows] == [
        (0.3, 2), (0.3, 4), (0.6, 2), (0.6, 4)]
    vals = [r['val_recall@20'] for r in result.rows]
    assert result.selected == vals.index(max(vals))
    # The test split appears at the selected point only.
    assert [('test_recall@20' in r) for r in result.rows] == [
        i == result.selected for i in range(4)]
    assert result.rows[result.selected]['test_recall@20'] == result.test['recall@20']
    assert sorted(result.files) == sorted(['sweep.csv', 'sweep.json', 'heatmap.png',
                                           'report.md'])
    record = json.loads((out / 'sweep.json').read_text())
    assert record['selected'] == result.selected
    assert record['selected_by'] == 'validation recall@20'
    assert record['test_at_selected'] == result.test
    with open(out / 'sweep.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['selected']) for r in rows] == [int(i == result.selected) for i in range(4)]
    assert [float(r['val_recall@20']) for r in rows] == pytest.approx(vals)

    from matplotlib.image import imread
    image = imread(str(out / 'heatmap.png'))
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # two panels side by side
    report = (out / 'report.md').read_text()
    assert '![heatmap.png](heatmap.png)' in report
    assert f"{result.test['recall@20']:.4f}" in report
    assert report.count(' | - | - |') == 3  # no test values at the other points


def test_rerun_skips_finished_points_and_a_changed_setting_reruns(tmp_path, epochs):
    out = str(tmp_path / 'sweep')
    axes = {'graph.alpha': [0.3, 0.6]}
    first = run_sweep(SYNTHETIC, _config(), axes, out, progress=False)
    assert epochs['n'] == 4
    again = run_sweep(SYNTHETIC, _config(), axes, out, progress=False)
    assert epochs['n'] == 4 and again.points_run == 0
    assert again.rows == first.rows and again.test == first.test
    changed = run_sweep(SYNTHETIC, _config('train.lr=0.01'), axes, out, progress=False)
    assert epochs['n'] == 8 and changed.points_run == 2


def test_selected_point_without_checkpoint_is_retrained_and_checked(tmp_path, epochs):
    # A sweep folder kept with its point.json files only (the checkpoints are
    # megabytes each): the selected point is trained again for its test.
    import os

    out = str(tmp_path / 'sweep')
    axes = {'graph.alpha': [0.3, 0.6]}
    first = run_sweep(SYNTHETIC, _config(), axes, out, progress=False)
    selected = os.path.join(out, 'points', f'{first.selected:03d}')
    os.remove(os.path.join(selected, 'checkpoint.pt'))
    lines = []
    again = run_sweep(SYNTHETIC, _config(), axes, out, progress=False, log=lines.append)
    assert epochs['n'] == 4 + 2 and again.points_run == 0
    assert again.test == first.test and again.rows == first.rows
    assert any('no checkpoint.pt' in line for line in lines)

    os.remove(os.path.join(selected, 'checkpoint.pt'))
    record_path = os.path.join(selected, 'point.json')
    with open(record_path) as f:
        record = json.load(f)
    record['row']['val_recall@20'] += 0.5  # still the best: selected again
    with open(record_path, 'w') as f:
        json.dump(record, f)
    with pytest.raises(ValueError, match='not reproducible here: delete its point.json'):
        run_sweep(SYNTHETIC, _config(), axes, out, progress=False)


def test_selection_uses_validation_even_when_test_disagrees(tmp_path, monkeypatch):
    # Stand-in training: validation favours point 1, test would favour point 3.
    val = [0.10, 0.30, 0.20, 0.05]
    test = [0.40, 0.10, 0.20, 0.90]
    tested = []

    def fake_train(point, data, device, resume, progress):
        return {'best_epoch': 1, 'epochs_trained': 1, 'train_time_s': 0.0,
                'val_recall@20': val[point.index], 'val_ndcg@20': val[point.index] / 2}

    def fake_test(point, data, device, *args):
        tested.append(point.index)
        return {'recall@20': test[point.index], 'ndcg@20': test[point.index] / 2}, None

    monkeypatch.setattr(sweep_module, '_train_point', fake_train)
    monkeypatch.setattr(sweep_module, '_test_point', fake_test)
    result = run_sweep(SYNTHETIC, _config(), AXES, str(tmp_path / 's'), progress=False)
    assert result.selected == 1 and tested == [1]
    assert result.selected_settings == {'graph.alpha': 0.3, 'graph.jaccard_k': 4}
    assert result.test == {'recall@20': 0.10, 'ndcg@20': 0.05}
    assert 'selected graph.alpha=0.3, graph.jaccard_k=4' in repr(result)


def test_one_setting_draws_a_line_plot_and_three_draw_none(tmp_path, monkeypatch):
    def fake_train(point, data, device, resume, progress):
        return {'best_epoch': 1, 'epochs_trained': 1, 'train_time_s': 0.0,
                'val_recall@20': 0.1 * (point.index + 1), 'val_ndcg@20': 0.05}

    monkeypatch.setattr(sweep_module, '_train_point', fake_train)
    monkeypatch.setattr(sweep_module, '_test_point',
                        lambda point, data, device, *args: ({'recall@20': 0.5}, None))
    line = run_sweep(SYNTHETIC, _config(), {'model.out_channels': [4, 8, 16]},
                     str(tmp_path / 'a'), progress=False)
    assert 'sweep.png' in line.files and line.selected == 2
    from matplotlib.image import imread
    assert imread(str(tmp_path / 'a' / 'sweep.png')).ndim == 3
    three = run_sweep(SYNTHETIC, _config(), {'graph.alpha': [0.3], 'graph.jaccard_k': [2],
                                             'train.lr': [0.001, 0.01]},
                      str(tmp_path / 'b'), progress=False)
    assert not [f for f in three.files if f.endswith('.png')]


def test_bad_sweeps_fail_before_training(tmp_path, epochs):
    with pytest.raises(ValueError, match="unknown key 'graph.alphaa'"):
        run_sweep(SYNTHETIC, _config(), {'graph.alphaa': [0.1]}, str(tmp_path / 'a'))
    with pytest.raises(ValueError, match="'graph.jaccard_k' must be an integer"):
        run_sweep(SYNTHETIC, _config(), {'graph.jaccard_k': [2, 'x']}, str(tmp_path / 'b'))
    with pytest.raises(ValueError, match='a sweep searches its own --grid settings'):
        run_sweep(SYNTHETIC, build_config(SYNTHETIC, grid=['model.out_channels=4,8']),
                  {'graph.alpha': [0.1]}, str(tmp_path / 'c'))
    with pytest.raises(ValueError, match='at least one SECTION.KEY'):
        run_sweep(SYNTHETIC, _config(), {}, str(tmp_path / 'd'))
    assert epochs['n'] == 0
