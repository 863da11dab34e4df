import csv
import json

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.prefer import (
    FullHistoryLeakWarning,
    HistoryPolicy,
    build_preference_prompts,
    generate_preferences,
)
from mllmrec_pyg.llm.prompts import PreferencePrompt
from tests.llm.fake_backend import FakeBackend

DESCRIPTIONS = ['mug red', 'sock blue', 'hat green', 'scarf grey', 'cap black']


def dataset(with_time=True):
    data = HeteroData()
    data.name, data.domain = 'toy', 'Home'
    data['user'].num_nodes = 3
    data['user'].raw_id = ['ann', 'bob', 'cy']
    data['item'].num_nodes = 5
    data['item'].raw_id = ['i0', 'i1', 'i2', 'i3', 'i4']
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
    with pytest.raises(ValueError, match='Unknown preference source'):
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
    assert rows[0] == ['user', 'preference', 'preference_source']
    assert [r[0] for r in rows[1:]] == ['ann', 'bob']
    assert all(r[2] == 'train' for r in rows[1:])
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
    assert summary['history_policy']['ordering'] == 'most_recent_first'

    again = generate_preferences(data, FakeBackend(), cache, DESCRIPTIONS,
                                 progress=False)
    assert (again.result.calls, again.result.cache_hits) == (0, 2)
