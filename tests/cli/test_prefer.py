import csv
import json

import pytest

from mllmrec_pyg.cli import main
from mllmrec_pyg.data import load_dataset, split_fingerprint, train_edge_index
from mllmrec_pyg.llm.outputs import read_preferences_tsv
from mllmrec_pyg.llm.prefer import FullHistoryLeakWarning
from mllmrec_pyg.llm.quality import cut_runaway
from tests.llm.fake_server import FakeOpenAIServer

SPEC = 'synthetic:users=6,items=10,seed=0'


def read(out):
    with open(out / 'preferences.tsv', newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    prompts = [json.loads(line) for line in
               (out / 'prompts.jsonl').read_text().splitlines()]
    return rows, prompts, json.loads((out / 'summary.json').read_text())


def test_prefer_over_http_twice(tmp_path):
    pytest.importorskip('httpx')
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        argv = ['prefer', SPEC, '--backend', 'openai', '--base-url',
                server.base_url, '--out', str(out), '--no-progress',
                '--cache', str(tmp_path / 'cache.sqlite')]
        assert main(argv) == 0
        rows, prompts, summary = read(out)
        assert {k: summary[k] for k in ('backend', 'model',
                                        'preference_source', 'users', 'calls',
                                        'cache_hits', 'failures')} == {
            'backend': 'openai', 'model': 'fake-model',
            'preference_source': 'train', 'users': 6, 'calls': 6,
            'cache_hits': 0, 'failures': 0}
        data = load_dataset(SPEC)
        assert [r[0] for r in rows[1:]] == data['user'].raw_id
        # Every listed item is one of the user's TRAINING items.
        train = train_edge_index(data)
        raw_items = data['item'].raw_id
        for prompt in prompts:
            user = data['user'].raw_id.index(prompt['user'])
            allowed = {raw_items[i] for i in
                       train[1, train[0] == user].tolist()}
            assert prompt['item_ids'] and set(prompt['item_ids']) <= allowed
            # Echoed after the system message, loops cut (the synthetic
            # descriptions repeat "Designed for people who like").
            assert rows[1 + user][1] == cut_runaway(
                f"echo {prompt['prompt']}").text

        assert main(argv) == 0
        _, _, again = read(out)
        assert (again['calls'], again['cache_hits']) == (0, 6)
        assert len(server.requests) == 6
        # The second summary still accounts for the whole job.
        assert again['completion_tokens'] == 0
        assert again['all_outputs']['texts'] == 6
        assert again['all_outputs']['completion_tokens'] == summary['completion_tokens'] > 0


def test_prefer_full_history_is_marked(tmp_path, capsys):
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        with pytest.warns(FullHistoryLeakWarning):
            assert main(['prefer', SPEC, '--backend', 'openai', '--base-url',
                         server.base_url, '--out', str(out), '--no-progress',
                         '--max-users', '2', '--preference-source',
                         'full_history']) == 0
    rows, prompts, summary = read(out)
    assert summary['preference_source'] == 'full_history'
    assert 'LEAKED' in capsys.readouterr().err
    assert [p['preference_source'] for p in prompts] == ['full_history'] * 2
    assert [r[2] for r in rows] == ['preference_source'] + ['full_history'] * 2
    # The leaky file still records the split its training edges come from.
    fingerprint = split_fingerprint(load_dataset(SPEC))
    assert [r[3] for r in rows] == ['split_fingerprint'] + [fingerprint] * 2
    assert summary['split_fingerprint'] == fingerprint


def test_prefer_errors(tmp_path, capsys):
    assert main(['prefer', SPEC, '--out', str(tmp_path), '--max-users',
                 '0']) == 2
    assert '--max-users must be >= 1' in capsys.readouterr().err
    assert main(['prefer', SPEC, '--backend', 'hf', '--out',
                 str(tmp_path)]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(['prefer', SPEC, '--out', str(tmp_path),
                 '--max-description-words', '0']) == 2
    assert '--max-description-words must be >= 1' in capsys.readouterr().err


def test_prefer_prompts_are_those_of_run(tmp_path):
    from mllmrec_pyg.llm.prefer import build_preference_prompts
    from mllmrec_pyg.llm.text import prompt_item_descriptions

    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        argv = ['prefer', SPEC, '--backend', 'openai', '--base-url',
                server.base_url, '--no-progress', '--cache',
                str(tmp_path / 'cache.sqlite')]
        assert main(argv + ['--out', str(out)]) == 0
        # The opt-in word cut is labelled and gives other prompts.
        words = tmp_path / 'words'
        assert main(argv + ['--out', str(words), '--max-description-words',
                            '3']) == 0
    _, prompts, summary = read(out)
    data = load_dataset(SPEC)
    # `mllmrec run` composes D_m^i with the encoder's tokenizer and budget.
    expected = build_preference_prompts(data, prompt_item_descriptions(data).texts)
    assert [p['prompt'] for p in prompts] == [p.prompt for p in expected.prompts]
    settings = summary['item_descriptions']
    assert (settings['tokenizer'], settings['max_tokens']) == ('BertTokenizer', 254)
    _, cut, summary = read(words)
    settings = summary['item_descriptions']
    assert (settings['tokenizer'], settings['max_tokens']) == ('WordTokenizer()', 3)
    assert [p['prompt'] for p in cut] != [p['prompt'] for p in prompts]


def test_preferences_are_refused_on_another_split(tmp_path):
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        assert main(['prefer', SPEC, '--backend', 'openai', '--base-url',
                     server.base_url, '--out', str(out), '--no-progress',
                     '--max-users', '2']) == 0
    path = str(out / 'preferences.tsv')
    texts, sources = read_preferences_tsv(path, load_dataset(SPEC))
    assert sorted(texts) == [0, 1] and sources == ['train']
    # The same interactions, split by MMRec's random rule instead.
    for seed in (1, 2):
        with pytest.raises(ValueError, match=f'{path} was built on another '
                           "split .*this dataset's 'split=mmrec;"
                           f'seed={seed};train='):
            read_preferences_tsv(path, load_dataset(SPEC, split='mmrec',
                                                    seed=seed))


@pytest.mark.slow
def test_prefer_with_smollm2(tmp_path):
    pytest.importorskip('gguf')
    from mllmrec_pyg.llm.backends import smollm2_gguf_path
    try:
        smollm2_gguf_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    out = tmp_path / 'out'
    # Two listed items keep the prompt (and its CPU prefill) short.
    assert main(['prefer', SPEC, '--max-users', '1', '--max-new-tokens', '6',
                 '--max-items', '2',
                 '--out', str(out), '--no-progress']) == 0
    rows, prompts, summary = read(out)
    assert summary['backend'] == 'smollm2' and summary['calls'] == 1
    assert len(rows) == 2 and rows[1][1]


def test_prefer_defaults_and_the_old_behaviour(tmp_path, capsys):
    from mllmrec_pyg.llm.prompts import PREFERENCE_SYSTEM_PROMPT

    cache = str(tmp_path / 'cache.sqlite')
    with FakeOpenAIServer(finish_reason='length') as server:
        # One request at a time: server.requests[i] is the prompt of user i.
        argv = ['prefer', SPEC, '--backend', 'openai', '--base-url',
                server.base_url, '--no-progress', '--cache', cache,
                '--user-sample', '3', '--concurrency', '1']
        assert main(argv + ['--out', str(tmp_path / 'new')]) == 0
        err = capsys.readouterr().err
        # The seeded sample: users 0, 3 and 5 of 6.
        rows, prompts, summary = read(tmp_path / 'new')
        assert [r[0] for r in rows[1:]] == ['0', '3', '5']
        assert summary['user_sample'] == {'size': 3, 'seed': 0}
        body = server.requests[0]
        assert body['messages'][0] == {'role': 'system',
                                       'content': PREFERENCE_SYSTEM_PROMPT}
        assert body['messages'][1]['content'] == prompts[0]['prompt']
        assert (body['frequency_penalty'], body['presence_penalty'],
                body['stop']) == (0.3, 0.3, ['\n\n'])
        quality = summary['quality']
        assert (quality['outputs'], quality['token_cap_share'],
                quality['repeated_3gram_share']) == (3, 1.0, 0.0)
        assert quality['before_cut']['repeated_3gram_share'] == 1.0
        assert quality['cut'] == {'loop': 3, 'list': 0, 'cap': 0}
        assert ('quality of 3 preferences: 0% repeat a 3-gram 3+ times, '
                'distinct-2 ') in err
        assert '100% hit the token cap, 0% open with boilerplate' in err

        # The behaviour of earlier versions, by explicit options.
        old = ['--decoding', 'legacy', '--system-prompt', 'none',
               '--no-runaway-cut', '--out', str(tmp_path / 'old')]
        assert main(argv + old) == 0
        rows, prompts, summary = read(tmp_path / 'old')
        assert server.requests[3] == {
            'model': 'fake-model',
            'messages': [{'role': 'user', 'content': prompts[0]['prompt']}],
            'max_tokens': 160, 'temperature': 0.0, 'seed': 0, 'stream': False}
        assert [r[1] for r in rows[1:]] == [f"echo {p['prompt']}"
                                            for p in prompts]
        assert summary['generation_params'] == {
            'max_tokens': 160, 'temperature': 0.0, 'seed': 0}
        assert (summary['system_prompt'], summary['runaway_cut']) == (
            None, False)
        assert summary['quality']['repeated_3gram_share'] == 1.0
        # Server-specific fields travel, and are keyed.
        assert main(argv + ['--server-param', 'repeat_penalty=1.2',
                            '--server-param', 'mirostat_mode=2',
                            '--out', str(tmp_path / 'extra')]) == 0
        assert len(server.requests) == 9
        assert (server.requests[-1]['repeat_penalty'],
                server.requests[-1]['mirostat_mode']) == (1.2, 2)
        _, _, summary = read(tmp_path / 'extra')
        assert summary['generation_params']['extra_params'] == {
            'mirostat_mode': 2, 'repeat_penalty': 1.2}

        custom = tmp_path / 'system.txt'
        custom.write_text('Answer in one sentence.\n')
        assert main(argv + ['--system-prompt', str(custom), '--out',
                            str(tmp_path / 'custom')]) == 0
        assert server.requests[-1]['messages'][0] == {
            'role': 'system', 'content': 'Answer in one sentence.'}


def test_prefer_generation_option_errors(tmp_path, capsys):
    out = ['--out', str(tmp_path)]
    assert main(['prefer', SPEC, '--max-users', '2', '--user-sample', '2',
                 *out]) == 2
    assert ('--max-users and --user-sample both choose the users: give one '
            'of them') in capsys.readouterr().err
    missing = tmp_path / 'nope.txt'
    assert main(['prefer', SPEC, '--system-prompt', str(missing), *out]) == 2
    assert (f"--system-prompt '{missing}' not found: pass 'default', 'none' "
            'or a text file') in capsys.readouterr().err
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n')
    assert main(['prefer', SPEC, '--system-prompt', str(empty), *out]) == 2
    assert "is empty: pass 'none'" in capsys.readouterr().err
    assert main(['prefer', SPEC, '--server-param', 'top_k=40', *out]) == 2
    assert ("--server-param applies to --backend openai only (the 'smollm2' "
            'backend sends no HTTP request)') in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['prefer', SPEC, '--server-param', 'no-equals', *out])
    assert 'must be KEY=VALUE, e.g. repeat_penalty=1.2' in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['prefer', SPEC, '--decoding', 'greedy', *out])
    with pytest.raises(SystemExit):
        main(['prefer', SPEC, '--user-sample', '0', *out])


def test_backend_options_name_the_decoding():
    from mllmrec_pyg.cli._llm_options import backend_options

    # Named even when default, so stage keys built from the options (those
    # of `mllmrec run`) change with it.
    assert backend_options('smollm2', 96, 4, 120.0, threads=1) == {
        'max_new_tokens': 96, 'seed': None, 'num_threads': 1,
        'decoding': 'guarded'}
    assert backend_options('openai', 96, 2, 60.0, decoding='legacy',
                           server_params={'repeat_penalty': 1.2}) == {
        'max_tokens': 96, 'seed': None, 'max_concurrency': 2, 'timeout': 60.0,
        'decoding': 'legacy', 'extra_params': {'repeat_penalty': 1.2}}
    assert backend_options('image-stats', 96, 4, 120.0) == {}


def test_prefer_shards_merged_make_the_single_run(tmp_path, capsys):
    pytest.importorskip('httpx')
    with FakeOpenAIServer() as server:
        def prefer(*extra):
            return main(['prefer', SPEC, '--backend', 'openai', '--base-url',
                         server.base_url, '--no-progress', *extra])

        assert prefer('--cache', str(tmp_path / 'single.sqlite'), '--out',
                      str(tmp_path / 'single')) == 0
        assert len(server.requests) == 6
        for i in (1, 2):
            assert prefer('--shard', f'{i}/2', '--cache',
                          str(tmp_path / f'shard{i}.sqlite'), '--out',
                          str(tmp_path / f'shard{i}')) == 0
        assert len(server.requests) == 12
        err = capsys.readouterr().err
        assert '[shard 1/2: 3 of 6 users]' in err
        assert '[shard 2/2: 3 of 6 users]' in err
        single, _, _ = read(tmp_path / 'single')
        shards = [read(tmp_path / f'shard{i}') for i in (1, 2)]
        # sha256('0'..'5') mod 2 = 0, 1, 0, 1, 0, 1.
        assert [[r[0] for r in rows[1:]] for rows, _, _ in shards] == [
            ['0', '2', '4'], ['1', '3', '5']]
        assert [[p['user'] for p in prompts] for _, prompts, _ in shards] == [
            ['0', '2', '4'], ['1', '3', '5']]
        assert sorted(shards[0][0][1:] + shards[1][0][1:]) == sorted(single[1:])
        for i, (_, _, summary) in enumerate(shards, start=1):
            assert (summary['shard'], summary['shard_selection'],
                    summary['users'], summary['calls']) == (
                f'{i}/2', {'users': 3, 'of': 6}, 3, 3)

        merged = str(tmp_path / 'merged.sqlite')
        assert main(['cache', 'merge', merged, str(tmp_path / 'shard1.sqlite'),
                     str(tmp_path / 'shard2.sqlite')]) == 0
        assert prefer('--cache', merged, '--out', str(tmp_path / 'all')) == 0
        # No request: every user came from the merged cache.
        assert len(server.requests) == 12
    _, _, summary = read(tmp_path / 'all')
    assert (summary['calls'], summary['cache_hits']) == (0, 6)
    assert 'shard' not in summary
    for name in ('preferences.tsv', 'prompts.jsonl'):
        assert (tmp_path / 'all' / name).read_bytes() == \
            (tmp_path / 'single' / name).read_bytes()


def test_prefer_shard_errors(tmp_path, capsys):
    argv = ['prefer', SPEC, '--out', str(tmp_path), '--cache',
            str(tmp_path / 'c.sqlite'), '--shard']
    for value in ('0/2', '3/2', '1/0', 'x'):
        assert main(argv + [value]) == 2
        assert capsys.readouterr().err == (
            f"mllmrec prefer: error: --shard '{value}': expected I/N with 1 <= "
            "I <= N (1-based: '--shard 1/2' and '--shard 2/2' are the two "
            'halves)\n')
    assert main(['prefer', SPEC, '--out', str(tmp_path), '--shard',
                 '1/2']) == 2
    assert capsys.readouterr().err == (
        'mllmrec prefer: error: --shard 1/2 needs --cache FILE.sqlite, a cache '
        'file of its own per shard (merge them afterwards with `mllmrec cache '
        'merge OUT.sqlite IN1.sqlite ...`)\n')


def test_prefer_shard_of_a_sample(tmp_path):
    # The shard takes its share of the users the other options chose.
    with FakeOpenAIServer() as server:
        assert main(['prefer', SPEC, '--backend', 'openai', '--base-url',
                     server.base_url, '--no-progress', '--max-users', '4',
                     '--shard', '2/2', '--cache', str(tmp_path / 'c.sqlite'),
                     '--out', str(tmp_path / 'out')]) == 0
    rows, _, summary = read(tmp_path / 'out')
    assert [r[0] for r in rows[1:]] == ['1', '3']
    assert summary['shard_selection'] == {'users': 2, 'of': 4}
