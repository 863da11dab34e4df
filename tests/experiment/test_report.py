import json

import pytest
from PIL import Image

from mllmrec_pyg.experiment import build_config, run_experiment
from mllmrec_pyg.experiment.report import (
    beyond_accuracy_table,
    metric_label,
    metric_table,
    protocol_line,
    training_log,
    validation_plot,
    write_report,
)

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'
PLOTS = ['plots/training_loss.png', 'plots/val_recall_at_20.png']


def _config(*overrides, model='mllmrec', grid=()):
    extra = ['model.hidden_channels=16', 'model.out_channels=8'] if model == 'mllmrec' else []
    return build_config(SYNTHETIC, model=model, grid=list(grid),
                        overrides=['train.max_epochs=2', *extra, *overrides])


def _table_values(report, header_start):
    r"""{(split, column header): cell} of the Markdown table whose header
    row starts with :obj:`header_start`."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[start].strip('|').split('|')]
    values = {}
    for line in lines[start + 2:start + 4]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        values.update({(cells[0], h): c for h, c in zip(header[1:], cells[1:], strict=True)})
    return values


def test_metric_label_and_plot_names():
    assert metric_label('recall@20') == 'R@20'
    assert metric_label('map@5') == 'MAP@5'
    assert metric_label('coverage@10') == 'Coverage@10'
    assert metric_label('hit') == 'Hit'
    assert validation_plot('recall@20') == 'plots/val_recall_at_20.png'
    assert validation_plot('ndcg@10') == 'plots/val_ndcg_at_10.png'


def test_metric_tables_of_hand_built_metrics():
    metrics = {'val': {'recall@5': 0.5, 'ndcg@5': 0.25}, 'test': {'recall@5': 1 / 3}}
    lines = metric_table(metrics)
    assert lines[0].startswith('| split | R@5 | R@10 | R@20 | R@50 | N@5 |')
    assert lines[0].endswith('| MAP@50 |')
    assert lines[1] == '|' + '---|' * 17
    assert lines[2] == '| val | 0.5000 | - | - | - | 0.2500 |' + ' - |' * 11
    assert lines[3] == '| test | 0.3333 |' + ' - |' * 15
    assert beyond_accuracy_table(metrics) == []
    beyond = beyond_accuracy_table({'test': {'coverage@5': 0.4, 'novelty@50': 2.0}})
    assert beyond[0] == ('| split | Coverage@5 | Coverage@10 | Coverage@20 | Coverage@50 '
                         '| Novelty@5 | Novelty@10 | Novelty@20 | Novelty@50 |')
    assert beyond[2] == '| val |' + ' - |' * 8
    assert beyond[3] == '| test | 0.4000 | - | - | - | - | - | - | 2.0000 |'


def test_protocol_line():
    assert protocol_line({}) == ('user inputs from TRAINING interactions only; users: '
                                 'learned ID embeddings')
    assert protocol_line({'inputs': {'item_features': 'MiniLM of D_m',
                                     'user_features': 'stand-in: mean'}}) == (
        'user inputs from TRAINING interactions only; items: MiniLM of D_m; users: '
        'stand-in: mean; every user uses the stand-in')
    inputs = {'item_features': 'MiniLM of D_m = item text + image descriptions by qwen',
              'user_features': 'MiniLM of smollm2 preferences',
              'users_with_stand_in': 3,
              'preference_summary': {'backend': 'smollm2', 'model': 'SmolLM2-360M',
                                     'preference_source': 'full_history'}}
    assert protocol_line({'inputs': inputs}) == (
        'LEAKED: user inputs saw validation and test items; items: MiniLM of D_m = item '
        'text + image descriptions by qwen; users: MiniLM of smollm2 preferences; user '
        'preferences written by smollm2 (SmolLM2-360M); 3 users fell back to the stand-in')
    inputs['preference_summary']['preference_source'] = 'train'
    assert protocol_line({'inputs': inputs}).startswith(
        'user inputs from TRAINING interactions only; ')
    assert protocol_line({'inputs': {'leaked': True}}).startswith('LEAKED: ')


def test_report_and_plots_of_a_tiny_run(tmp_path):
    out = tmp_path / 'run'
    first = run_experiment(SYNTHETIC, _config(), str(out), progress=False)
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['split_fingerprint'].startswith('split=given;train=')
    report = (out / 'report.md').read_text()
    for file in PLOTS:
        with Image.open(out / file) as image:
            image.verify()
        with Image.open(out / file) as image:
            assert image.format == 'PNG' and image.size == (600, 360)
        assert f']({file})' in report
    assert 'user inputs from TRAINING interactions only' in report
    assert f"Selected epoch {metrics['best_epoch']} of 2" in report
    assert f"split `{metrics['split_fingerprint']}`" in report

    # Every cell of the tables is the metrics.json value.
    table = _table_values(report, '| split | R@5 |')
    beyond = _table_values(report, '| split | Coverage@5 |')
    assert len(table) == 2 * 16 and len(beyond) == 2 * 8
    for split in ('val', 'test'):
        for family in ('recall', 'ndcg', 'precision', 'map', 'coverage', 'novelty'):
            for k in (5, 10, 20, 50):
                name = f'{family}@{k}'
                cells = beyond if family in ('coverage', 'novelty') else table
                assert cells[(split, metric_label(name))] == f'{metrics[split][name]:.4f}'

    record = json.loads((out / 'stages.json').read_text())['report']
    assert record['files'] == ['report.md', *PLOTS]
    assert first.stages_run[-1] == 'report'

    # A deleted plot reruns the report stage, and only it.
    (out / PLOTS[1]).unlink()
    again = run_experiment(SYNTHETIC, _config(), str(out), progress=False)
    assert again.stages_run == ['report']
    assert again.stages_skipped == ['graph', 'train', 'evaluate']
    assert (out / PLOTS[1]).exists()
    assert run_experiment(SYNTHETIC, _config(), str(out), progress=False).stages_run == []


def test_plots_mark_the_selected_epoch_of_the_log(tmp_path):
    # log.csv as the trainer writes it, hand-built: epoch 2 is selected.
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'log.csv').write_text('epoch,loss,improved,val_recall@20,val_ndcg@20\n'
                                     '1,0.7,1,0.1,0.05\n2,0.6,1,0.3,0.2\n3,0.5,0,0.2,0.1\n')
    metrics = {'model': 'bpr', 'best_epoch': 2, 'epochs_trained': 3, 'val': {}, 'test': {},
               'config': {'train': {'val_metric': 'ndcg@20'}}}
    config = build_config(SYNTHETIC, model='bpr')
    files = write_report(str(run_dir), config, metrics)
    assert files == ['report.md', 'plots/training_loss.png', 'plots/val_recall_at_20.png',
                     'plots/val_ndcg_at_20.png']
    report = (run_dir / 'report.md').read_text()
    assert 'From `log.csv`; the dashed line marks the selected epoch (2).' in report
    assert '![Validation N@20 per epoch](plots/val_ndcg_at_20.png)' in report
    assert 'No training curves' not in report

    # Without a log the report says why, and the plots of before go.
    (run_dir / 'log.csv').unlink()
    assert write_report(str(run_dir), config, metrics) == ['report.md']
    assert 'No training curves: log.csv is missing.' in (run_dir / 'report.md').read_text()
    assert not list((run_dir / 'plots').iterdir())


def test_training_log_of_a_grid_is_the_selected_point(tmp_path):
    (tmp_path / 'grid.csv').write_text('reg_weight,best_epoch,selected\n0.1,1,0\n0.2,3,1\n')
    (tmp_path / 'grid' / 'run_1').mkdir(parents=True)
    (tmp_path / 'grid' / 'run_1' / 'log.csv').write_text('epoch,loss\n1,0.5\n')
    grid = {'grid_search': {'grid': {'reg_weight': [0.1, 0.2]}, 'table': 'grid.csv'}}
    assert training_log(str(tmp_path), grid) == ('grid/run_1/log.csv', '')
    assert training_log(str(tmp_path), {}) == (None, 'log.csv is missing')
    (tmp_path / 'grid.csv').write_text('reg_weight,best_epoch,selected\n0.1,1,0\n')
    assert training_log(str(tmp_path), grid) == (
        None, 'grid.csv is missing or names no selected grid point')


def test_a_grid_run_gets_its_report(tmp_path):
    out = tmp_path / 'grid'
    run_experiment(SYNTHETIC, _config(model='bpr', grid=['model.embedding_dim=8,16']),
                   str(out), progress=False)
    metrics = json.loads((out / 'metrics.json').read_text())
    report = (out / 'report.md').read_text()
    index = [row.split(',')[-1] for row in
             (out / 'grid.csv').read_text().splitlines()[1:]].index('1')
    assert f'From `grid/run_{index}/log.csv`' in report
    for file in PLOTS:
        with Image.open(out / file) as image:
            image.verify()
    lines = report.splitlines()
    start = lines.index('| run | embedding_dim | best epoch | val R@20 | selected |')
    rows = [line.split(' | ') for line in lines[start + 2:start + 4]]
    assert [row[1] for row in rows] == ['8', '16']
    assert [row[-1].rstrip(' |') for row in rows].index('yes') == index
    selected = metrics['grid_search']['selected']
    assert f'Selected on validation recall@20: `{json.dumps(selected)}`.' in report


@pytest.mark.parametrize('broken', ['grid.csv', 'log.csv'])
def test_report_survives_a_missing_training_file(tmp_path, broken):
    out = tmp_path / 'run'
    grid = ['model.embedding_dim=8,16'] if broken == 'grid.csv' else []
    run_experiment(SYNTHETIC, _config(model='bpr', grid=grid), str(out), progress=False)
    (out / broken).unlink()
    again = run_experiment(SYNTHETIC, _config(model='bpr', grid=grid), str(out),
                           progress=False, force=['report'])
    assert again.stages_run == ['report']
    report = (out / 'report.md').read_text()
    assert 'No training curves: ' in report and not (out / PLOTS[0]).exists()
