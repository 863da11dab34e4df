import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'examples'


def _run_example(name, *args):
    # MLLMREC_HOME is the test's own folder (conftest), inherited here; one
    # thread keeps the example from oversubscribing a shared machine.
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args],
                          capture_output=True, text=True, env=env, timeout=600,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def _metric(line, name):
    match = re.search(rf'{re.escape(name)}: ([0-9.]+)', line)
    assert match is not None, f'{name} not in {line!r}'
    value = float(match.group(1))
    assert 0.0 <= value <= 1.0
    return value


def test_examples_have_a_readme_entry():
    readme = (EXAMPLES / 'README.md').read_text()
    for path in sorted(EXAMPLES.glob('*.py')):
        assert f'python examples/{path.name}' in readme, path.name


@pytest.mark.slow
def test_mllmrec_synthetic():
    out = _run_example('mllmrec_synthetic.py', '--epochs', '2')
    lines = out.splitlines()
    assert lines[0] == 'Dataset: 500 users, 300 items, 4977 training interactions'
    assert 'Item features: sentence-transformers/all-MiniLM-L6-v2, (300, 384)' in lines
    assert any(line.startswith('RefineItemGraph(knn_k=10, alpha=0.4, jaccard_k=10): ')
               for line in lines)
    assert sum(line.startswith('Epoch: ') for line in lines) == 2
    assert re.search(r'^Best epoch: [12] \(of 2\)$', out, re.MULTILINE)
    test = next(line for line in lines if line.startswith('Test: '))
    for name in ('Recall@10', 'Recall@20', 'NDCG@10', 'NDCG@20'):
        _metric(test, name)
    assert _metric(test, 'Recall@10') <= _metric(test, 'Recall@20')


@pytest.mark.slow
def test_refined_graph_in_your_model():
    out = _run_example('refined_graph_in_your_model.py', '--epochs', '2')
    lines = out.splitlines()
    assert "data['item', 'knn', 'item']: 3000 edges" in lines
    assert any(line.startswith("data['item', 'similar', 'item']: ") for line in lines)
    for name in ('LightGCN: ', 'LightGCN + refined item graph: '):
        line = next(line for line in lines if line.startswith(name))
        assert re.search(r'best epoch [12],', line)
        _metric(line, 'Test Recall@20')
        _metric(line, 'NDCG@20')


@pytest.mark.slow
def test_plug_into_freedom():
    out = _run_example('plug_into_freedom.py', '--epochs', '2')
    lines = [line for line in out.splitlines() if line.startswith('FREEDOM')]
    assert [line.split(':')[0] for line in lines] == ['FREEDOM', 'FREEDOM+GR']
    for line in lines:
        _metric(line, 'Val Recall@20')
        _metric(line, 'Test Recall@20')
