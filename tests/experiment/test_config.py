import inspect
import json

import pytest

from mllmrec_pyg.experiment import (
    build_config,
    parse_override,
    read_layer,
    resolve_config,
)
from mllmrec_pyg.experiment.config import (
    SECTIONS,
    graph_keys,
    model_keys,
    parse_grid_override,
    train_keys,
)


def test_keys_are_the_real_argument_names():
    from mllmrec_pyg.nn.models import LightGCN, MLLMRec
    from mllmrec_pyg.train import Trainer
    from mllmrec_pyg.transforms import RefineItemGraph

    # The search cache and the progress bars are not settings of a run.
    assert set(graph_keys()) == set(inspect.signature(RefineItemGraph).parameters) - {
        'candidates', 'progress', 'group'}
    assert set(train_keys()) == set(inspect.signature(Trainer).parameters) - {
        'model', 'data', 'out_dir', 'progress', 'tensorboard'}
    assert {'hidden_channels', 'out_channels', 'item_layers', 'user_init'} <= set(
        model_keys('mllmrec'))
    assert 'item_x' not in model_keys('mllmrec')
    assert set(model_keys('lightgcn')) == set(inspect.signature(LightGCN).parameters) - {
        'num_users', 'num_items', 'edge_index'}
    assert model_keys('mllmrec')['hidden_channels'] == inspect.signature(
        MLLMRec).parameters['hidden_channels'].default


def test_resolve_fills_defaults_and_later_layers_win():
    config = resolve_config([{'graph': {'alpha': 0.7}, 'train': {'lr': 0.01}},
                             {'graph': {'alpha': 0.5}}], ['a', 'b'], model='bpr')
    assert config.model == {'name': 'bpr', 'embedding_dim': 64, 'reg_weight': 1e-3}
    assert config.graph['alpha'] == 0.5 and config.graph['knn_k'] == 10
    assert config.train['lr'] == 0.01 and config.train['max_epochs'] == 1000
    assert config.train['ks'] == [5, 10, 20, 50]
    assert config.seed == 2024 and config.sources == ['a', 'b']


def test_per_model_settings_apply_to_their_model_only():
    layer = {'model': {'lightgcn': {'num_layers': 2}, 'bpr': {'reg_weight': 0.5}}}
    assert resolve_config([layer], model='lightgcn').model['num_layers'] == 2
    assert resolve_config([layer], model='bpr').model['reg_weight'] == 0.5
    assert 'num_layers' not in resolve_config([layer], model='bpr').model


@pytest.mark.parametrize('layer, message', [
    ({'grpah': {}}, "unknown section 'grpah' (did you mean 'graph'?"),
    ({'graph': {'alpah': 0.4}}, "unknown key 'graph.alpah' (did you mean 'graph.alpha'?"),
    ({'train': {'max_epoch': 3}}, "unknown key 'train.max_epoch' (did you mean "
                                  "'train.max_epochs'?"),
    ({'model': {'hidden_dim': 256}}, "unknown key 'model.hidden_dim' (did you mean "
                                     "'model.hidden_channels'?"),
    ({'dataset': {'splt': 'mmrec'}}, "unknown key 'dataset.splt' (did you mean "
                                     "'dataset.split'?"),
    ({'grid': {'reg_wieght': [1, 2]}}, "unknown key 'grid.reg_wieght' (did you mean "
                                       "'grid.reg_weight'?"),
    ({'grid': {'reg_weight': 0.1}}, 'grid.reg_weight must be a non-empty list'),
    ({'grid': {'graph.alpha': [0.4]}}, 'the grid searches model arguments'),
    ({'train': {'lr': 'fast'}}, "'train.lr' must be a number (got 'fast')"),
    ({'train': {'max_epochs': 1.5}}, "'train.max_epochs' must be an integer"),
    ({'graph': 3}, 'section "graph" must be a mapping'),
    ({'model': {'reg_weight': 1.0}, 'grid': {'reg_weight': [1.0]}},
     "['reg_weight'] set in both model and grid"),
])
def test_config_errors_are_one_line(layer, message):
    with pytest.raises(ValueError) as info:
        resolve_config([layer], model='bpr' if 'hidden_dim' not in str(layer) else 'mllmrec')
    assert message in str(info.value)
    assert '\n' not in str(info.value)


def test_unknown_model_names_the_closest():
    with pytest.raises(ValueError, match="unknown model 'lightgnc' \\(did you mean 'lightgcn'"):
        resolve_config([], model='lightgnc')


def test_grid_replaces_a_lower_layers_fixed_value():
    config = resolve_config([{'model': {'reg_weight': 0.1}}, {'grid': {'reg_weight': [1, 2]}}],
                            model='bpr')
    assert config.grid == {'reg_weight': [1, 2]} and 'reg_weight' not in config.model


def test_overrides():
    assert parse_override('graph.alpha=0.6') == {'graph': {'alpha': 0.6}}
    assert parse_override('graph.alpha=None') == {'graph': {'alpha': None}}
    assert parse_override('model.user_init=random') == {'model': {'user_init': 'random'}}
    assert parse_override('train.ks=[10, 20]') == {'train': {'ks': [10, 20]}}
    assert parse_override('model.lightgcn.num_layers=2') == {
        'model': {'lightgcn': {'num_layers': 2}}}
    assert parse_grid_override('model.reg_weight=1e-4,0.001') == {
        'grid': {'model.reg_weight': [1e-4, 0.001]}}
    for bad in ('alpha=0.6', 'graph.alpha', 'grahp.alpha=1'):
        with pytest.raises(ValueError, match='--set'):
            parse_override(bad)


def test_read_layer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such config file'):
        read_layer(str(tmp_path / 'missing.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"graph": {"alpha": 0.4,}}')
    with pytest.raises(ValueError, match='bad.json, line 1: invalid JSON'):
        read_layer(str(bad))
    bad.write_text('[1, 2]')
    with pytest.raises(ValueError, match='must be a mapping of sections'):
        read_layer(str(bad))
    yaml_file = tmp_path / 'c.yaml'
    yaml_file.write_text('graph:\n  alpha: 0.5\n')
    assert read_layer(str(yaml_file)) == {'graph': {'alpha': 0.5}}


def test_saved_config_reads_back_equal(tmp_path):
    config = build_config('my-data', overrides=['graph.alpha=0.6', 'train.seed=7'],
                          model='mllmrec')
    config.save(str(tmp_path / 'config.json'))
    again = build_config(config=str(tmp_path / 'config.json'))
    assert again.to_dict() == config.to_dict()
    assert set(json.loads((tmp_path / 'config.json').read_text())) == set(SECTIONS)


def test_recipe_by_name_not_by_substring(capsys):
    messages = []
    sports = build_config('/data/amazon-sports', model='mllmrec', log=messages.append)
    assert (sports.graph['alpha'], sports.graph['jaccard_k']) == (0.4, 10)
    assert 'recipe amazon-sports' in messages[-1]
    baby = build_config('my-data', recipe='amazon-baby', model='mllmrec')
    assert (baby.graph['alpha'], baby.graph['jaccard_k']) == (0.7, 10)
    assert baby.dataset['path'] == 'my-data'
    # 'sports' is a substring of the path, but no recipe is NAMED like the folder.
    messages.clear()
    plain = build_config('/data/my-sports-copy', model='mllmrec', log=messages.append)
    assert plain.graph['alpha'] == 0.4 and plain.dataset['domain'] is None
    assert "no recipe named 'my-sports-copy': the defaults apply" in messages[-1]
    clothing = build_config('x', recipe='amazon-clothing', model='mllmrec')
    assert (clothing.graph['alpha'], clothing.graph['jaccard_k']) == (0.6, 15)
    with pytest.raises(ValueError, match="unknown recipe 'amazon-sport' \\(did you mean "
                                         "'amazon-sports'"):
        build_config('x', recipe='amazon-sport')


def test_list_values_only_where_the_argument_takes_a_sequence():
    layer = {'graph': {'key': ['image_feat', 'audio_feat'], 'alpha': [0.9, None],
                       'fusion': 'mix'}}
    config = resolve_config([layer], model='freedom')
    assert config.graph['key'] == ['image_feat', 'audio_feat']
    assert config.graph['alpha'] == [0.9, None]
    with pytest.raises(ValueError, match=r"'graph.key\[\]' must be a string \(got 1\)"):
        resolve_config([{'graph': {'key': ['x', 1]}}])
    with pytest.raises(ValueError, match="'train.lr' must be a number"):
        resolve_config([{'train': {'lr': [0.1, 0.01]}}])
    with pytest.raises(ValueError, match="must not be an empty list"):
        resolve_config([{'graph': {'key': []}}])
