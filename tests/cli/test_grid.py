import json

from mllmrec_pyg.cli import main

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'


def test_grid_command_runs_the_sweep_and_prints_the_selection(tmp_path, capsys):
    out = tmp_path / 'rq4'
    code = main(['grid', SYNTHETIC, '--model', 'mllmrec', '--grid', 'graph.alpha=0.3,0.6',
                 '--grid', 'graph.jaccard_k=2,4', '--epochs', '2', '--set',
                 'model.out_channels=8', '--out', str(out), '--no-progress'])
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((out / 'sweep.json').read_text())
    chosen = record['selected_settings']
    assert printed.startswith('4 points (4 trained now); selected on validation recall@20: '
                              f"graph.alpha={chosen['graph.alpha']}, "
                              f"graph.jaccard_k={chosen['graph.jaccard_k']}")
    assert f"test recall@20 {record['test_at_selected']['recall@20']:.4f}" in printed
    assert (out / 'heatmap.png').exists() and (out / 'report.md').exists()
    # A rerun trains nothing.
    assert main(['grid', SYNTHETIC, '--model', 'mllmrec', '--grid', 'graph.alpha=0.3,0.6',
                 '--grid', 'graph.jaccard_k=2,4', '--epochs', '2', '--set',
                 'model.out_channels=8', '--out', str(out), '--no-progress']) == 0
    assert capsys.readouterr().out.startswith('4 points (0 trained now)')


def test_grid_command_errors_are_one_line(tmp_path, capsys):
    for argv, message in (
            (['--grid', 'dataset.split=a,b'], "a sweep varies model, graph, train settings"),
            (['--grid', 'graph.alpha=0.3', '--grid', 'graph.alpha=0.4'], 'given twice'),
            (['--grid', 'graph.knn=3'], "unknown key 'graph.knn'")):
        code = main(['grid', SYNTHETIC, '--out', str(tmp_path / 'x'), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].startswith('mllmrec grid: error: ') and message in err[-1]
