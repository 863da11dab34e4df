import csv
import json

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from mllmrec_pyg.cli import main
from mllmrec_pyg.experiment.compare import compare_runs
from mllmrec_pyg.metrics import EvaluationResult

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'


def _train(tmp_path, name, model='bpr', path=SYNTHETIC, *options):
    out = tmp_path / name
    assert main(['train', path, '--model', model, '--epochs', '2', '--out', str(out),
                 '--no-progress', *options]) == 0
    return out


def _per_user(run, metric='recall@20'):
    result = EvaluationResult.load(str(run / 'per_user_test.npz'))
    return result.users.numpy(), result.per_user[metric].numpy()


def _error(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_compare_table_and_paired_t_test(tmp_path, capsys):
    bpr = _train(tmp_path, 'bpr')
    lightgcn = _train(tmp_path, 'lightgcn', 'lightgcn')
    other_seed = _train(tmp_path, 'bpr-seed3', 'bpr', SYNTHETIC, '--seed', '3')
    capsys.readouterr()
    prefix = tmp_path / 'out' / 'cmp'
    assert main(['compare', str(bpr), str(lightgcn), str(other_seed),
                 '--out', str(prefix)]) == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / 'out' / 'cmp.md').read_text().split('\n![')[0]
    lines = printed.splitlines()
    assert lines[0] == ('| run | model | dataset | R@10 | R@20 | N@10 | N@20 | '
                        'Δ R@20 vs baseline | p (paired t) | users |')
    metrics = {run: json.loads((run / 'metrics.json').read_text())
               for run in (bpr, lightgcn, other_seed)}
    users, base = _per_user(bpr)
    with open(f'{prefix}.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['run'] for r in rows] == ['bpr', 'lightgcn', 'bpr-seed3']
    assert [r['baseline'] for r in rows] == ['1', '0', '0']
    for line, row, run in zip(lines[2:5], rows, (bpr, lightgcn, other_seed), strict=True):
        cells = [c.strip() for c in line.strip('|').split('|')]
        test = metrics[run]['test']
        assert cells[:7] == [run.name, metrics[run]['model'], metrics[run]['dataset_name'],
                             *(f'{test[m]:.4f}' for m in ('recall@10', 'recall@20',
                                                          'ndcg@10', 'ndcg@20'))]
        assert float(row['recall@20']) == test['recall@20']
        assert row['split_fingerprint'] == metrics[run]['split_fingerprint']
        if run == bpr:
            assert cells[7:] == ['baseline', '-', str(len(users))]
            continue
        run_users, values = _per_user(run)
        assert np.array_equal(run_users, users)
        direct = stats.ttest_rel(values, base)
        assert float(row['p_value']) == float(direct.pvalue)
        assert float(row['t_statistic']) == float(direct.statistic)
        assert float(row['mean_difference']) == float(values.mean() - base.mean())
        assert cells[7:] == [f'{values.mean() - base.mean():+.4f}',
                             f'{float(direct.pvalue):.4g}', str(len(users))]
    with Image.open(f'{prefix}.png') as image:
        image.verify()

    # --baseline: a run not listed comes first; --metric picks the tested one.
    comparison = compare_runs([str(bpr)], baseline=str(lightgcn), metric='ndcg@10')
    assert [r.name for r in comparison.runs] == ['lightgcn', 'bpr']
    test = comparison.tests[1]
    _, values = _per_user(lightgcn, 'ndcg@10')
    assert test.p_value == float(stats.ttest_rel(_per_user(bpr, 'ndcg@10')[1],
                                                 values).pvalue)


def test_compare_refuses_other_datasets_and_splits(tmp_path, capsys):
    a = _train(tmp_path, 'a')
    b = _train(tmp_path, 'b', 'bpr', 'synthetic:users=40,items=30,seed=6')
    capsys.readouterr()
    assert main(['compare', str(a), str(b)]) == 2
    names = [json.loads((r / 'metrics.json').read_text())['dataset_name'] for r in (a, b)]
    assert _error(capsys) == (f'mllmrec compare: error: cannot compare {a} and {b}: '
                              f'different datasets ({names[0]} vs {names[1]}); compare '
                              'runs of one dataset and split')

    s1 = _train(tmp_path, 's1', 'bpr', SYNTHETIC, '--set', 'dataset.split=mmrec',
                '--set', 'dataset.seed=1')
    s2 = _train(tmp_path, 's2', 'bpr', SYNTHETIC, '--set', 'dataset.split=mmrec',
                '--set', 'dataset.seed=2')
    prints = [json.loads((r / 'metrics.json').read_text())['split_fingerprint']
              for r in (s1, s2)]
    assert prints[0].startswith('split=mmrec;seed=1;train=')
    capsys.readouterr()
    assert main(['compare', str(s1), str(s2), '--out', str(tmp_path / 'c')]) == 2
    assert _error(capsys) == (f'mllmrec compare: error: cannot compare {s1} and {s2}: '
                              f'different splits of {names[0]} ({prints[0]} vs '
                              f'{prints[1]}); compare runs of one dataset and split')
    assert not (tmp_path / 'c.md').exists()

    # A run folder written before split_fingerprint: its config.json decides.
    for run in (s1, s2):
        metrics = json.loads((run / 'metrics.json').read_text())
        del metrics['split_fingerprint']
        (run / 'metrics.json').write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=rf"cannot compare {s1} and {s2}: different split "
                       r"settings of .* \(seed=1 vs 2; .* and .* record no "
                       r"split_fingerprint: rerun with --force evaluate to record it\)"):
        compare_runs([str(s1), str(s2)])
    assert compare_runs([str(s1), str(s1)]).tests[1].p_value == 1.0


def test_compare_bad_options(tmp_path, capsys):
    a = _train(tmp_path, 'a')
    capsys.readouterr()
    assert main(['compare', str(a), '--metric', 'coverage@20']) == 2
    assert _error(capsys).startswith(
        f'mllmrec compare: error: --metric coverage@20: {a / "per_user_test.npz"} has no '
        'per-user coverage@20 (a paired test needs one; available: hit@10, ')
    assert main(['compare', str(a), '--out', str(tmp_path)]) == 2
    assert _error(capsys) == (f'mllmrec compare: error: --out {tmp_path}: is a folder; '
                              f'give a file prefix, e.g. {tmp_path / "compare"}')
    assert capsys.readouterr().out == ''
    assert main(['compare', str(a), str(tmp_path / 'none')]) == 2
    assert _error(capsys) == (f'mllmrec compare: error: {tmp_path / "none" / "metrics.json"}'
                              ': not found; RUN_DIR must be the --out folder of `mllmrec '
                              'train` or `mllmrec run`')
    (a / 'per_user_test.npz').write_bytes(b'PK\x03\x04 truncated')
    assert main(['compare', str(a)]) == 2
    assert _error(capsys) == (f'mllmrec compare: error: {a / "per_user_test.npz"}: not a '
                              'readable per-user result (corrupt or truncated); rerun the '
                              'run with --force evaluate')
