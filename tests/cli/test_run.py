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
    assert set(metrics['val']) >= {'recall@20', 'ndcg@20', 'precision@20', 'map@20'}
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



def test_second_identical_run_makes_no_llm_call_and_trains_nothing(tmp_path, epochs,
                                                                   monkeypatch, capsys):
    from tests.llm.fake_server import FakeOpenAIServer

    out = tmp_path / 'run'
    with FakeOpenAIServer() as server:
        argv = ['run', SYNTHETIC, '--out', str(out), '--prefer-backend', 'openai',
                '--prefer-model', server.model, '--base-url', server.base_url,
                '--llm-users', '5', '--epochs', '2', '--no-progress']
        assert main(argv) == 0
        first = (out / 'metrics.json').read_text()
        calls, trained = len(server.requests), epochs['n']
        assert calls == 5 and trained == 2
        capsys.readouterr()

        # Nothing changed: no backend is even built, no epoch is trained.
        import mllmrec_pyg.llm.backends as backends
        original = backends.make_backend

        def no_backend(*args, **kwargs):
            raise AssertionError('a backend was built for an up-to-date stage')

        monkeypatch.setattr(backends, 'make_backend', no_backend)
        assert main(argv) == 0
        assert len(server.requests) == calls and epochs['n'] == trained
        err = capsys.readouterr().err
        assert ('up to date, not rerun: describe, prefer, encode, graph, train, evaluate, '
                'report') in err
        assert (out / 'metrics.json').read_text() == first

        # --force train retrains and re-evaluates, and still calls no LLM.
        assert main(argv + ['--force', 'train']) == 0
        assert len(server.requests) == calls and epochs['n'] == 2 * trained
        # One more LLM user reruns prefer (the cache answers the first 5).
        monkeypatch.setattr(backends, 'make_backend', original)
        assert main(argv[:-5] + ['--llm-users', '6', '--epochs', '2', '--no-progress']) == 0
        assert len(server.requests) == calls + 1 and epochs['n'] == 3 * trained


def test_prefer_and_run_write_byte_identical_prompts(tmp_path):
    from tests.llm.fake_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        llm = ['--base-url', server.base_url, '--no-progress']
        assert main(['run', SYNTHETIC, '--out', str(tmp_path / 'run'), '--prefer-backend',
                     'openai', '--prefer-model', server.model, '--llm-users', '4',
                     '--epochs', '1', *llm]) == 0
        assert main(['prefer', SYNTHETIC, '--backend', 'openai', '--model', server.model,
                     '--max-users', '4', '--out', str(tmp_path / 'prefer'), '--descriptions',
                     str(tmp_path / 'run' / 'describe' / 'descriptions.tsv'), *llm]) == 0
    run_prompts = (tmp_path / 'run' / 'prefer' / 'prompts.jsonl').read_bytes()
    assert run_prompts == (tmp_path / 'prefer' / 'prompts.jsonl').read_bytes()
    assert len(run_prompts.splitlines()) == 4
    assert (tmp_path / 'run' / 'prefer' / 'preferences.tsv').read_bytes() == (
        tmp_path / 'prefer' / 'preferences.tsv').read_bytes()


def test_stage_commands_stop_where_they_say(tmp_path, epochs):
    out = tmp_path / 'run'
    base = [SYNTHETIC, '--out', str(out), '--prefer-backend', 'none', '--no-progress',
            '--epochs', '1']
    assert main(['encode', *base]) == 0
    assert (out / 'encode' / 'features.pt').exists() and not (out / 'graph').exists()
    assert main(['graph', *base]) == 0
    assert (out / 'graph' / 'item_graph.pt').exists() and epochs['n'] == 0
    assert not (out / 'metrics.json').exists()
    assert main(['evaluate', *base]) == 0
    assert (out / 'metrics.json').exists() and epochs['n'] == 1
    assert main(['run', *base]) == 0
    assert epochs['n'] == 1 and (out / 'report.md').exists()
    (out / 'report.md').unlink()
    assert main(['report', str(out)]) == 0
    assert '| test |' in (out / 'report.md').read_text()


def test_prefer_settings_are_part_of_the_prefer_stage_key(tmp_path, capsys):
    from tests.llm.fake_server import FakeOpenAIServer

    out = tmp_path / 'run'
    with FakeOpenAIServer() as server:
        argv = ['encode', SYNTHETIC, '--out', str(out), '--prefer-backend', 'openai',
                '--prefer-model', server.model, '--base-url', server.base_url,
                '--llm-users', '3', '--no-progress']

        def run(*options):
            capsys.readouterr()
            assert main(argv + list(options)) == 0
            err = capsys.readouterr().err
            return 'prefer: up to date' in err, 'encode: up to date' in err

        def summary():
            return json.loads((out / 'prefer' / 'summary.json').read_text())

        assert run() == (False, False) and len(server.requests) == 3
        first = server.requests[-1]
        assert first['messages'][0]['role'] == 'system'
        assert first['frequency_penalty'] == 0.3
        # The same settings skip the stage (and the default ones spelt out).
        assert run() == (True, True)
        assert run('--decoding', 'guarded', '--system-prompt', 'default') == (True, True)
        assert len(server.requests) == 3

        # Another decoding reruns prefer (new generations) and encode.
        assert run('--decoding', 'legacy') == (False, False)
        assert len(server.requests) == 6
        assert 'frequency_penalty' not in server.requests[-1]
        assert run('--decoding', 'legacy') == (True, True)

        # Another system message: new generations without it.
        assert run('--system-prompt', 'none') == (False, False)
        assert len(server.requests) == 9
        assert [m['role'] for m in server.requests[-1]['messages']] == ['user']
        custom = tmp_path / 'system.txt'
        custom.write_text('Answer in one sentence.\n')
        assert run('--system-prompt', str(custom)) == (False, False)
        assert server.requests[-1]['messages'][0] == {
            'role': 'system', 'content': 'Answer in one sentence.'}
        assert run('--system-prompt', str(custom)) == (True, True)
        custom.write_text('Answer in two sentences.\n')  # the content is keyed
        assert run('--system-prompt', str(custom)) == (False, False)
        assert len(server.requests) == 15

        # The runaway cut changes the texts written, not the generations.
        assert run('--no-runaway-cut') == (False, False)
        assert len(server.requests) == 15
        assert summary()['runaway_cut'] is False
        assert run('--no-runaway-cut') == (True, True)
        assert run() == (False, False) and summary()['runaway_cut'] is True
        assert len(server.requests) == 15

        # A server field is sent and keyed too.
        assert run('--server-param', 'top_k=40') == (False, False)
        assert server.requests[-1]['top_k'] == 40
        assert run('--server-param', 'top_k=40') == (True, True)


def test_run_refuses_bad_prefer_options_before_loading(tmp_path, capsys):
    out = ['--out', str(tmp_path / 'run')]
    assert main(['run', SYNTHETIC, *out, '--server-param', 'top_k=40']) == 2
    assert ("--server-param applies to an 'openai' backend only (--describe-backend "
            "'image-stats' and --prefer-backend 'smollm2' send no HTTP request)"
            ) in capsys.readouterr().err
    missing = tmp_path / 'missing.txt'
    assert main(['run', SYNTHETIC, *out, '--system-prompt', str(missing)]) == 2
    assert f"--system-prompt '{missing}' not found" in capsys.readouterr().err
    assert not (tmp_path / 'run' / 'config.json').exists()
    with pytest.raises(SystemExit):
        main(['run', SYNTHETIC, *out, '--decoding', 'greedy'])


def test_run_progress_reaches_the_encoder(tmp_path, monkeypatch):
    import mllmrec_pyg.llm.encode as encode

    made = []

    class Recording(encode.TextEncoder):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get('progress', False))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(encode, 'TextEncoder', Recording)
    base = [SYNTHETIC, '--prefer-backend', 'none']
    assert main(['encode', *base, '--out', str(tmp_path / 'quiet'), '--no-progress']) == 0
    assert main(['encode', *base, '--out', str(tmp_path / 'shown')]) == 0
    assert made == [False, True]
