import csv
import json

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import split_fingerprint
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.outputs import read_preferences_tsv
from mllmrec_pyg.llm.prefer import (
    FullHistoryLeakWarning,
    HistoryPolicy,
    build_preference_prompts,
    generate_preferences,
    sample_users,
)
from mllmrec_pyg.llm.prompts import PREFERENCE_SYSTEM_PROMPT, PreferencePrompt
from tests.llm.fake_backend import FakeBackend

DESCRIPTIONS = ['mug red', 'sock blue', 'hat green', 'scarf grey', 'cap black']


def dataset(with_time=True):
    data = HeteroData()
    data.name, data.domain = 'toy', 'Home'
    data['user'].num_nodes = 3
    data['user'].raw_id = ['ann', 'bob', 'cy']
    data['item'].num_nodes = 5
    data['item'].raw_id = ['i0', 'i1', 'i2', 'i3', 'i4']
    data.report = {'split': 'mmrec', 'seed': 2024}
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 2],
                                     [0, 1, 2, 3, 4, 4, 0, 1]])
    store.train_mask = torch.tensor([1, 1, 1, 0, 0, 1, 0, 0]).bool()
    store.val_mask = torch.tensor([0, 0, 0, 1, 0, 0, 0, 1]).bool()
    store.test_mask = torch.tensor([0, 0, 0, 0, 1, 0, 1, 0]).bool()
    if with_time:
        store.time = torch.tensor([1., 3., 2., 4., 5., 1., 2., 1.],
                                  dtype=torch.float64)
    return data


def lists(prompts):
    return {p.user: p.item_indices for p in prompts.prompts}


def test_training_items_only_most_recent_first():
    prompts = build_preference_prompts(dataset(), DESCRIPTIONS)
    assert lists(prompts) == {0: [1, 2, 0], 1: [4]}
    assert prompts.skipped_users == [2]
    assert prompts.ordering == 'most_recent_first'
    assert prompts.prompts[0].prompt == PreferencePrompt().format(
        ['sock blue', 'hat green', 'mug red'])
    # Ann's valid (i3) and test (i4) items are never described to the LLM.
    assert 'scarf' not in prompts.prompts[0].prompt
    assert 'cap' not in prompts.prompts[0].prompt


def test_full_history_warns_and_leaks():
    with pytest.warns(FullHistoryLeakWarning, match='LEAKED'):
        prompts = build_preference_prompts(dataset(), DESCRIPTIONS,
                                           source='full_history')
    assert lists(prompts) == {0: [4, 3, 1, 2, 0], 1: [0, 4], 2: [1]}
    assert prompts.source == 'full_history'
    with pytest.raises(ValueError, match="Unknown source 'test' for user "
                       'preferences'):
        build_preference_prompts(dataset(), DESCRIPTIONS, source='test')


def test_seeded_sample_without_timestamps():
    policy = HistoryPolicy(max_items=2, seed=7)
    prompts = build_preference_prompts(dataset(with_time=False),
                                       DESCRIPTIONS, policy=policy)
    assert prompts.ordering == 'seeded_sample'
    sample = lists(prompts)[0]
    assert len(sample) == 2 and set(sample) <= {0, 1, 2}
    # A user's sample depends on the seed and the user, not on the run.
    alone = build_preference_prompts(dataset(with_time=False), DESCRIPTIONS,
                                     policy=policy, users=[0])
    assert lists(alone) == {0: sample}
    assert prompts.truncated_users == 1
    # The one-item user is not sampled.
    assert lists(prompts)[1] == [4]


def test_prompt_size_cap_and_empty_descriptions():
    descriptions = ['a b c', 'd e f', 'g h i', 'x', 'y']
    template = PreferencePrompt('{list}')
    policy = HistoryPolicy(max_prompt_words=7)
    prompts = build_preference_prompts(dataset(), descriptions, policy=policy,
                                       template=template)
    # 1 word for the brackets + 3 + 3 fits; a third description would not.
    assert lists(prompts)[0] == [1, 2]
    assert prompts.prompts[0].prompt == '["d e f", "g h i"]'
    assert prompts.prompts[0].history == 3
    described = ['', 'sock', 'hat', 'v', 't']
    assert lists(build_preference_prompts(dataset(), described))[0] == [1, 2]
    with pytest.raises(ValueError, match='Got 2 item descriptions for 5'):
        build_preference_prompts(dataset(), ['a', 'b'])


def test_generate_and_write(tmp_path):
    data = dataset()
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    run = generate_preferences(data, FakeBackend(), cache, DESCRIPTIONS,
                               progress=False)
    run.write(data, str(tmp_path / 'out'))
    with open(tmp_path / 'out' / 'preferences.tsv', newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    assert rows[0] == ['user', 'preference', 'preference_source',
                       'split_fingerprint']
    assert [r[0] for r in rows[1:]] == ['ann', 'bob']
    assert all(r[2] == 'train' for r in rows[1:])
    # Ann, Bob and Cy's training pairs (i0, i1, i2), (i4), ().
    assert split_fingerprint(data) == \
        'split=mmrec;seed=2024;train=0bf27f02a4a09c1c'
    assert all(r[3] == split_fingerprint(data) for r in rows[1:])
    lines = (tmp_path / 'out' / 'prompts.jsonl').read_text().splitlines()
    first = json.loads(lines[0])
    assert first['user'] == 'ann' and first['item_ids'] == ['i1', 'i2', 'i0']
    assert first['preference_source'] == 'train'
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert {k: summary[k] for k in ('backend', 'model', 'preference_source',
                                    'users', 'calls', 'cache_hits',
                                    'failures')} == {
        'backend': 'fake', 'model': 'fake-1', 'preference_source': 'train',
        'users': 2, 'calls': 2, 'cache_hits': 0, 'failures': 0}
    assert summary['skipped_users'] == ['cy']
    assert summary['split_fingerprint'] == split_fingerprint(data)
    assert summary['history_policy']['ordering'] == 'most_recent_first'

    again = generate_preferences(data, FakeBackend(), cache, DESCRIPTIONS,
                                 progress=False)
    assert (again.result.calls, again.result.cache_hits) == (0, 2)


def written(tmp_path, data, source='train'):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    if source == 'full_history':
        with pytest.warns(FullHistoryLeakWarning):
            run = generate_preferences(data, FakeBackend(), cache,
                                       DESCRIPTIONS, source=source,
                                       progress=False)
    else:
        run = generate_preferences(data, FakeBackend(), cache, DESCRIPTIONS,
                                   progress=False)
    run.write(data, str(tmp_path / source))
    return tmp_path / source / 'preferences.tsv', run.preferences()


def test_read_preferences_of_the_same_split(tmp_path):
    data = dataset()
    path, generated = written(tmp_path, data)
    texts, sources = read_preferences_tsv(str(path), dataset())
    assert sorted(texts) == [0, 1] and texts == generated
    assert sources == ['train']
    # The leaky mode keeps its label; the split is the same.
    leaked, generated = written(tmp_path, data, source='full_history')
    texts, sources = read_preferences_tsv(str(leaked), dataset())
    assert sorted(texts) == [0, 1, 2] and texts == generated
    assert sources == ['full_history']


def test_read_preferences_refuses_another_split(tmp_path):
    path, _ = written(tmp_path, dataset())
    # The same interactions split with another seed.
    reseeded = dataset()
    reseeded.report = {'split': 'mmrec', 'seed': 7}
    with pytest.raises(ValueError, match=f"{path} was built on another split "
                       r"\(split_fingerprint 'split=mmrec;seed=2024;train="
                       "0bf27f02a4a09c1c', this dataset's 'split=mmrec;"
                       "seed=7;train=0bf27f02a4a09c1c'\\)"):
        read_preferences_tsv(str(path), reseeded)
    # Another training edge set (Bob's test item moved to training).
    moved = dataset()
    moved['user', 'interacts', 'item'].train_mask[6] = True
    with pytest.raises(ValueError, match='was built on another split'):
        read_preferences_tsv(str(path), moved)
    # A hand-edited fingerprint on one row.
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('train=0bf2', 'train=0000')
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match="'split=mmrec;seed=2024;train="
                       "00007f02a4a09c1c'"):
        read_preferences_tsv(str(path), dataset())


def test_read_preferences_refuses_a_file_without_fingerprint(tmp_path):
    old = tmp_path / 'preferences.tsv'
    old.write_text('user\tpreference\tpreference_source\nann\tlikes mugs\t'
                   'train\n')
    with pytest.raises(ValueError, match=f'{old} records no '
                       'split_fingerprint .*`mllmrec prefer DATASET_PATH '
                       '--out DIR`'):
        read_preferences_tsv(str(old), dataset())


def loop_for_socks(prompt):
    if 'sock' in prompt:
        return 'This user likes socks. Socks socks socks socks socks.'
    return 'This user enjoys caps.'


def test_summary_reports_quality_and_loops_are_cut(tmp_path):
    data = dataset()
    backend = FakeBackend(answer=loop_for_socks, finish_reason='length')
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    run = generate_preferences(data, backend, cache, DESCRIPTIONS,
                               progress=False)
    # Prompt2 goes after the default system message.
    assert [r.system for r in backend.requests] == [PREFERENCE_SYSTEM_PROMPT] * 2
    assert run.result.texts['0'] == loop_for_socks('sock')  # cached as is
    # The second "socks socks socks" starts a loop: cut back to the sentence.
    assert run.preferences() == {0: 'This user likes socks.',
                                 1: 'This user enjoys caps.'}
    run.write(data, str(tmp_path / 'out'))
    with open(tmp_path / 'out' / 'preferences.tsv', newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    assert [r[1] for r in rows[1:]] == ['This user likes socks.',
                                        'This user enjoys caps.']
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert summary['system_prompt'] == PREFERENCE_SYSTEM_PROMPT
    assert summary['runaway_cut'] is True
    common = {'outputs': 2, 'token_cap_share': 1.0, 'finish_reason_known': 2,
              'boilerplate_share': 0.0, 'list_share': 0.0,
              'mean_items_named': 0.0, 'items_named_3plus_share': 0.0}
    assert summary['quality'] == {
        **common, 'repeated_3gram_share': 0.0, 'mean_distinct_2': 1.0,
        'mean_words': 4.0,
        'cut': {'loop': 1, 'list': 0, 'cap': 0},
        # Ann's text as generated: 4 distinct bigrams of 8, 9 words.
        'before_cut': {**common, 'repeated_3gram_share': 0.5,
                       'mean_distinct_2': (4 / 8 + 1.0) / 2,
                       'mean_words': (9 + 4) / 2},
    }


def test_old_behaviour_without_system_message_or_cut(tmp_path):
    data = dataset()
    backend = FakeBackend(answer=loop_for_socks)
    run = generate_preferences(
        data, backend, GenerationCache(str(tmp_path / 'c.sqlite')),
        DESCRIPTIONS, template=PreferencePrompt(system=None), progress=False,
        runaway_cut=False)
    assert [r.system for r in backend.requests] == [None, None]
    assert run.preferences() == {0: loop_for_socks('sock'),
                                 1: 'This user enjoys caps.'}
    summary = run.summary(data)
    assert summary['system_prompt'] is None and summary['runaway_cut'] is False
    quality = summary['quality']
    assert 'cut' not in quality and 'before_cut' not in quality
    assert (quality['repeated_3gram_share'], quality['token_cap_share'],
            quality['finish_reason_known']) == (0.5, None, 0)


def test_sample_users():
    assert sample_users(10, 3, seed=0) == [0, 6, 9]
    assert sample_users(10, 3, seed=1) == [1, 2, 4]
    assert sample_users(943, 5) == [394, 430, 776, 864, 911]
    assert sample_users(3, 10) == [0, 1, 2]
    with pytest.raises(ValueError, match='--user-sample must be >= 1'):
        sample_users(3, 0)
