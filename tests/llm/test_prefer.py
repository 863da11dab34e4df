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
