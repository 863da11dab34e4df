import json

import pytest
import torch

from mllmrec_pyg.experiment import StageStore, content_key


def test_content_key_depends_on_content_only():
    a = content_key('graph', {'alpha': 0.4, 'k': 10}, torch.tensor([1.0, 2.0]))
    assert a == content_key('graph', {'k': 10, 'alpha': 0.4}, torch.tensor([1.0, 2.0]))
    assert a != content_key('graph', {'alpha': 0.5, 'k': 10}, torch.tensor([1.0, 2.0]))
    assert a != content_key('graph', {'alpha': 0.4, 'k': 10}, torch.tensor([1.0, 2.5]))
    assert a != content_key('graph', {'alpha': 0.4, 'k': 10}, torch.tensor([1, 2]))
    assert content_key(None) != content_key('none')


def test_store_skips_only_what_finished_with_the_same_key(tmp_path):
    store = StageStore(str(tmp_path))
    assert not store.is_fresh('graph', 'k1')
    (tmp_path / 'g.pt').write_text('x')
    store.finish('graph', 'k1')
    again = StageStore(str(tmp_path))
    assert again.is_fresh('graph', 'k1', ['g.pt']) and again.skipped == ['graph']
    assert not again.is_fresh('graph', 'k2', ['g.pt'])
    (tmp_path / 'g.pt').unlink()
    assert not again.is_fresh('graph', 'k1', ['g.pt'])
    assert json.loads((tmp_path / 'stages.json').read_text())['graph']['key'] == 'k1'
    again.invalidate('graph')
    assert not StageStore(str(tmp_path)).is_fresh('graph', 'k1')


def test_force_cascades_to_later_stages(tmp_path):
    store = StageStore(str(tmp_path))
    for stage in ('encode', 'graph', 'train', 'evaluate'):
        store.finish(stage, 'k')
    forced = StageStore(str(tmp_path), force=['graph'])
    assert forced.is_fresh('encode', 'k')
    assert not any(forced.is_fresh(s, 'k') for s in ('graph', 'train', 'evaluate'))
    with pytest.raises(ValueError, match="--force: unknown stage"):
        StageStore(str(tmp_path), force=['trian'])
