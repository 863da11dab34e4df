import json

import pytest

from mllmrec_pyg.cli import main

SYNTHETIC = 'synthetic:users=40,items=60,seed=3'


@pytest.mark.slow
def test_run_pipeline_end_to_end(tmp_path, capsys):
    out = tmp_path / 'run'
    assert main(['run', SYNTHETIC, '--out', str(out), '--prefer-backend', 'none',
                 '--epochs', '2', '--no-progress']) == 0
    assert 'test recall@20' in capsys.readouterr().out
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['model'] == 'mllmrec'
    assert set(metrics['valid']) >= {'recall@20', 'ndcg@20', 'precision@20', 'map@20'}
    inputs = metrics['inputs']
    assert 'NOT an MLLM' in inputs['item_features']
    assert inputs['user_features'].startswith('stand-in')
    assert inputs['items_described'] == 60
    descriptions = (out / 'describe' / 'descriptions.tsv').read_text().splitlines()
    assert descriptions[0] == 'item\tdescription' and len(descriptions) == 61
    rows = (out / 'topk_test.tsv').read_text().splitlines()
    assert len(rows) - 1 == metrics['evaluation']['num_users_test']
    from mllmrec_pyg.data import load_dataset, train_edge_index
    data = load_dataset(SYNTHETIC)
    user, item = train_edge_index(data).tolist()
    seen = {(str(u), str(i)) for u, i in zip(user, item, strict=True)}
    for row in rows[1:]:
        user_id, *items = row.split('\t')
        # Training items are excluded, so a list holds min(50, #candidates).
        n_train = sum(1 for u, _ in seen if u == user_id)
        assert len(items) == min(50, 60 - n_train)
        assert not any((user_id, i) in seen for i in items)


def test_run_rejects_bad_llm_users(tmp_path, capsys):
    assert main(['run', SYNTHETIC, '--out', str(tmp_path), '--llm-users', 'many']) == 2
    assert "--llm-users must be a number or 'all'" in capsys.readouterr().err


def test_reasoning_labels_name_the_preference_model(tmp_path):
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.llm.cache import GenerationCache
    from mllmrec_pyg.llm.encode import TextEncoder
    from mllmrec_pyg.pipeline import reason_and_encode
    from tests.llm.fake_backend import FakeBackend

    data = load_dataset(SYNTHETIC)
    with TextEncoder(cache=False) as encoder:
        inputs = reason_and_encode(data, str(tmp_path), FakeBackend(),
                                   GenerationCache(str(tmp_path / 'c.sqlite')),
                                   encoder, users=[0, 1], progress=False)
    assert inputs.user_features.startswith(
        f'{encoder.name} embeddings of fake (fake-1) preferences from TRAINING items')
    assert inputs.counts['users_with_llm_preference'] == 2
    assert inputs.counts['preference_summary']['all_outputs']['texts'] == 2
