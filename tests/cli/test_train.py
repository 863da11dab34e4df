import json

import pytest
import torch

from mllmrec_pyg.cli import main
from mllmrec_pyg.data import load_dataset, train_edge_index
from mllmrec_pyg.metrics import paired_t_test

SYNTHETIC = 'synthetic:users=80,items=60,seed=0'


def _read_topk(path):
    with open(path) as f:
        header, *rows = [line.rstrip('\n').split('\t') for line in f]
    return header, rows


def _check_contract(out, data):
    metrics = json.loads((out / 'metrics.json').read_text())
    assert 1 <= metrics['epoch'] == metrics['best_epoch'] <= metrics['epochs_trained']
    for split in ('val', 'test'):
        assert 0.0 <= metrics[split]['recall@20'] <= 1.0
        assert set(metrics[split]) >= {'ndcg@10', 'precision@50', 'map@5', 'hit@20'}
    header, rows = _read_topk(out / 'topk_test.tsv')
    assert header == ['user_id'] + [f'item_{r}' for r in range(1, 51)]
    assert len(rows) == metrics['evaluation']['num_users_test']
    user_index = {raw: i for i, raw in enumerate(data['user'].raw_id)}
    item_index = {raw: i for i, raw in enumerate(data['item'].raw_id)}
    train = {tuple(p) for p in train_edge_index(data).t().tolist()}
    for row in rows:
        user, items = user_index[row[0]], [item_index[i] for i in row[1:]]
        assert len(items) == len(set(items)) and len(items) <= 50
        assert not any((user, item) in train for item in items)
        # Only a user holding more than 10 of the 60 items has a short list.
        assert len(items) == 50 or sum(u == user for u, _ in train) > 10
    return metrics


def test_train_bpr_writes_the_contract_files(tmp_path):
    config = tmp_path / 'config.json'
    config.write_text(json.dumps({'model': {'embedding_dim': 16, 'reg_weight': 1e-4},
                                  'train': {'lr': 0.01, 'batch_size': 256}}))
    out = tmp_path / 'bpr'
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--epochs', '3', '--seed', '1',
                 '--config', str(config), '--out', str(out), '--no-progress']) == 0
    metrics = _check_contract(out, load_dataset(SYNTHETIC))
    assert metrics['config']['model'] == {'embedding_dim': 16, 'reg_weight': 1e-4}
    assert metrics['config']['train']['lr'] == 0.01
    assert metrics['epochs_trained'] == 3
    assert (out / 'log.csv').exists()

    # A second seed can be compared user by user.
    other = tmp_path / 'bpr2'
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--epochs', '3', '--seed', '2',
                 '--config', str(config), '--out', str(other), '--no-progress']) == 0
    test = paired_t_test(str(out / 'per_user_test.npz'), str(other / 'per_user_test.npz'))
    assert test.num_users == metrics['evaluation']['num_users_test']


@pytest.mark.slow  # loads all-MiniLM-L6-v2 to encode the item text
def test_train_mllmrec_uses_a_labelled_user_stand_in(tmp_path):
    out = tmp_path / 'mllmrec'
    assert main(['train', SYNTHETIC, '--model', 'mllmrec', '--epochs', '2',
                 '--out', str(out), '--no-progress']) == 0
    metrics = _check_contract(out, load_dataset(SYNTHETIC))
    assert metrics['inputs']['user_features'].startswith('stand-in: mean of the MiniLM')
    assert metrics['inputs']['item_graph'] == 'RefineItemGraph(knn_k=10, alpha=0.4, jaccard_k=10)'


def test_config_errors(tmp_path, capsys):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"model": {"reg_weight": 1e-4}, "optimizer": {}}')
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--config', str(bad),
                 '--out', str(tmp_path / 'x')]) == 2
    assert "unknown section 'optimizer'" in capsys.readouterr().err
    bad.write_text('{"model": {"reg_weight": 1e-4,}}')
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--config', str(bad),
                 '--out', str(tmp_path / 'x')]) == 2
    assert 'bad.json, line 1: invalid JSON' in capsys.readouterr().err
    bad.write_text('{"model": {"reg_weight": 1e-4}, "grid": {"reg_weight": [1e-3, 1e-4]}}')
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--config', str(bad),
                 '--out', str(tmp_path / 'x')]) == 2
    assert "['reg_weight'] set in both model and grid" in capsys.readouterr().err


def test_user_stand_in_is_the_mean_of_training_items():
    from mllmrec_pyg.pipeline import mean_of_training_items
    data = load_dataset(SYNTHETIC)
    item_x = torch.randn(data['item'].num_nodes, 4)
    user_x = mean_of_training_items(data, item_x)
    edges = train_edge_index(data)
    items = edges[1][edges[0] == 5]
    assert torch.allclose(user_x[5], item_x[items].mean(dim=0))
    with pytest.raises(ValueError, match='no text to encode'):
        from mllmrec_pyg.pipeline import encode_items
        del data['item'].text
        encode_items(data)


def test_grid_in_config_selects_on_validation(tmp_path):
    config = tmp_path / 'grid.yaml'
    config.write_text('model:\n  embedding_dim: 8\ntrain:\n  lr: 0.01\n'
                      'grid:\n  reg_weight: [0.0001, 2.0]\n')
    out = tmp_path / 'grid'
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--epochs', '2', '--config', str(config),
                 '--out', str(out), '--no-progress']) == 0
    metrics = _check_contract(out, load_dataset(SYNTHETIC))
    with open(out / 'grid.csv') as f:
        header, *rows = [line.rstrip('\n').split(',') for line in f]
    column = dict(zip(header, zip(*rows, strict=True), strict=True))
    chosen = column['selected'].index('1')
    assert metrics['grid_search']['selected'] == {'reg_weight': [0.0001, 2.0][chosen]}
    assert float(column['val_recall@20'][chosen]) == metrics['val']['recall@20']
    assert float(column['test_recall@20'][chosen]) == metrics['test']['recall@20']
    # --resume continues every grid point from its checkpoint: 2 more epochs.
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--epochs', '4', '--config', str(config),
                 '--out', str(out), '--no-progress', '--resume']) == 0
    with open(out / 'grid' / 'run_0' / 'log.csv') as f:
        assert [row.split(',')[0] for row in f.read().splitlines()[1:]] == ['1', '2', '3', '4']


def test_train_lightgcn_end_to_end(tmp_path):
    config = tmp_path / 'config.json'
    config.write_text(json.dumps({'model': {'embedding_dim': 8, 'num_layers': 2}}))
    out = tmp_path / 'lightgcn'
    assert main(['train', SYNTHETIC, '--model', 'lightgcn', '--epochs', '2',
                 '--config', str(config), '--out', str(out), '--no-progress']) == 0
    metrics = _check_contract(out, load_dataset(SYNTHETIC))
    assert metrics['model'] == 'lightgcn' and metrics['epochs_trained'] == 2


def test_train_vbpr_reads_the_dataset_feature_files(tmp_path):
    import numpy as np

    # An MMRec folder with feature files and no item text at all.
    root = tmp_path / 'feats'
    root.mkdir()
    rows = ['userID\titemID\tx_label']
    for user in range(12):
        for item in range(user % 4, user % 4 + 6):
            rows.append(f'{user}\t{item % 60}\t{0 if item < user % 4 + 4 else 1 + item % 2}')
    (root / 'feats.inter').write_text('\n'.join(rows) + '\n')
    generator = np.random.default_rng(0)
    # One row per item: the itemIDs are 0..8.
    np.save(root / 'text_feat.npy', generator.random((9, 5)).astype(np.float32))
    np.save(root / 'image_feat.npy', generator.random((9, 3)).astype(np.float32))
    out = tmp_path / 'vbpr'
    assert main(['train', str(root), '--model', 'vbpr', '--epochs', '2',
                 '--out', str(out), '--no-progress']) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['inputs']['item_features'] == "the dataset's text_feat.npy + image_feat.npy"
    # 5 text + 3 image channels, projected to the item embedding.
    state = torch.load(out / 'checkpoint.pt', weights_only=True)['model']
    assert state['item_linear.weight'].shape[1] == 8


def _write_preferences(path, rows, source='train', fingerprint=None):
    from mllmrec_pyg.data import split_fingerprint

    fingerprint = fingerprint or split_fingerprint(load_dataset(SYNTHETIC))
    lines = ['user\tpreference\tpreference_source\tsplit_fingerprint']
    lines += [f'{user}\t{text}\t{source}\t{fingerprint}' for user, text in rows]
    path.write_text('\n'.join(lines) + '\n')


def test_train_mllmrec_with_preferences_file(tmp_path):
    data = load_dataset(SYNTHETIC)
    first, second = data['user'].raw_id[:2]
    prefs = tmp_path / 'preferences.tsv'
    _write_preferences(prefs, [(first, 'likes red mugs'), (second, '')])
    out = tmp_path / 'prefs'
    argv = ['train', SYNTHETIC, '--model', 'mllmrec', '--epochs', '1', '--out', str(out),
            '--no-progress', '--preferences', str(prefs)]
    assert main(argv) == 0
    inputs = json.loads((out / 'metrics.json').read_text())['inputs']
    # The empty preference keeps the training-items mean.
    assert inputs['users_with_preference'] == 1 and inputs['leaked'] is False
    assert inputs['user_features'].endswith(
        '(preference_source: train); 1/80 users, the others: the mean of their training items')

    _write_preferences(prefs, [(first, 'likes red mugs')], source='full_history')
    from mllmrec_pyg.llm.prefer import FullHistoryLeakWarning
    with pytest.warns(FullHistoryLeakWarning, match='LEAKED'):
        assert main(argv[:-4] + [str(tmp_path / 'leaked'), '--no-progress',
                                 '--preferences', str(prefs)]) == 0
    inputs = json.loads((tmp_path / 'leaked' / 'metrics.json').read_text())['inputs']
    assert inputs['leaked'] is True and '; LEAKED)' in inputs['user_features']


def test_preferences_file_errors(tmp_path, capsys):
    prefs = tmp_path / 'preferences.tsv'
    _write_preferences(prefs, [('nobody', 'x')])
    for extra, message in ((['--model', 'mllmrec'], "user 'nobody' is not in the dataset"),
                           (['--model', 'bpr'], 'it needs --model mllmrec')):
        assert main(['train', SYNTHETIC, *extra, '--epochs', '1', '--no-progress',
                     '--out', str(tmp_path / 'x'), '--preferences', str(prefs)]) == 2
        assert message in capsys.readouterr().err


def test_preferences_from_another_split_are_refused(tmp_path, capsys):
    from mllmrec_pyg.data import split_fingerprint

    prefs = tmp_path / 'preferences.tsv'
    first = load_dataset(SYNTHETIC)['user'].raw_id[0]
    # The same interactions split by MMRec's rule with another seed.
    other = split_fingerprint(load_dataset(SYNTHETIC, split='mmrec', seed=7))
    _write_preferences(prefs, [(first, 'likes red mugs')], fingerprint=other)
    argv = ['train', SYNTHETIC, '--model', 'mllmrec', '--epochs', '1', '--no-progress',
            '--out', str(tmp_path / 'x'), '--preferences', str(prefs)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f'{prefs} was built on another split' in err and 'mllmrec prefer' in err
    assert err.strip().splitlines()[-1].startswith('mllmrec train: error: ')
    assert not (tmp_path / 'x' / 'metrics.json').exists()
    # A file from before fingerprints existed is refused too.
    prefs.write_text(f'user\tpreference\tpreference_source\n{first}\tlikes mugs\ttrain\n')
    assert main(argv) == 2
    assert 'split_fingerprint' in capsys.readouterr().err


def test_recipe_by_name_and_defaults_said(tmp_path, capsys):
    import shutil

    from mllmrec_pyg.data import synthetic_folder
    source = synthetic_folder('synthetic:users=30,items=20,seed=1')
    mine = tmp_path / 'my-data'
    shutil.copytree(source, mine)
    argv = ['--model', 'mllmrec', '--epochs', '1', '--no-progress', '--set',
            'model.hidden_channels=8', '--set', 'model.out_channels=4']
    assert main(['train', str(mine), '--out', str(tmp_path / 'a'), *argv]) == 0
    assert "no recipe named 'my-data': the defaults apply" in capsys.readouterr().err
    config = json.loads((tmp_path / 'a' / 'config.json').read_text())
    assert (config['graph']['alpha'], config['graph']['jaccard_k']) == (0.4, 10)
    assert main(['train', str(mine), '--recipe', 'amazon-baby', '--out', str(tmp_path / 'b'),
                 *argv, '--set', 'dataset.split="auto"']) == 0
    assert 'recipe amazon-baby' in capsys.readouterr().err
    metrics = json.loads((tmp_path / 'b' / 'metrics.json').read_text())
    assert (metrics['config']['graph']['alpha'], metrics['config']['graph']['jaccard_k']) == (
        0.7, 10)
    assert 'alpha=0.7' in metrics['inputs']['item_graph']
    # The run folder's config.json reproduces the run.
    assert main(['train', '--config', str(tmp_path / 'b' / 'config.json'),
                 '--out', str(tmp_path / 'c'), '--no-progress']) == 0
    again = json.loads((tmp_path / 'c' / 'metrics.json').read_text())
    assert again['test'] == metrics['test'] and again['config'] == metrics['config']


def test_cli_config_errors_name_the_closest_key(tmp_path, capsys):
    for option, message in ((['--set', 'graph.alpah=0.5'],
                             "unknown key 'graph.alpah' (did you mean 'graph.alpha'?"),
                            (['--set', 'modle.reg_weight=1'],
                             "unknown section 'modle' (did you mean 'model'?"),
                            (['--recipe', 'amazon-sprots'],
                             "unknown recipe 'amazon-sprots' (did you mean 'amazon-sports'?"),
                            (['--grid', 'model.reg_weight'], "expected KEY=V1,V2"),
                            (['--force', 'trian'], None)):
        code = main(['train', SYNTHETIC, '--model', 'bpr', '--out', str(tmp_path / 'x'),
                     *option]) if option[0] != '--force' else None
        if code is None:
            with pytest.raises(SystemExit):
                main(['train', SYNTHETIC, '--model', 'bpr', '--out', str(tmp_path), *option])
            continue
        assert code == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1]


def test_preference_user_features_exact():
    from mllmrec_pyg.pipeline import preference_user_features

    class Encoder:
        def encode(self, texts):
            return torch.tensor([[float(len(t)), 1.0] for t in texts])

    data = load_dataset(SYNTHETIC)
    fallback = torch.zeros(80, 2)
    x, count = preference_user_features(data, {3: 'abc', 5: '  ', 0: 'hello'}, Encoder(),
                                        fallback)
    assert count == 2
    assert x[0].tolist() == [5.0, 1.0] and x[3].tolist() == [3.0, 1.0]
    assert x[5].tolist() == [0.0, 0.0] and torch.equal(x[6:], fallback[6:])
    with pytest.raises(ValueError, match='rows for 80 users'):
        preference_user_features(data, {}, Encoder(), torch.zeros(3, 2))


@pytest.mark.parametrize('model', ['freedom', 'soil'])
def test_train_multimodal_graph_models_end_to_end(tmp_path, model):
    out = tmp_path / model
    assert main(['train', SYNTHETIC, '--model', model, '--epochs', '1', '--out', str(out),
                 '--no-progress', '--set', 'model.embedding_dim=8']
                + (['--set', 'model.feat_embed_dim=8'] if model == 'freedom' else [])) == 0
    metrics = _check_contract(out, load_dataset(SYNTHETIC))
    assert metrics['inputs']['item_features'].startswith('modalities: x (all-MiniLM-L6-v2')
    config = json.loads((out / 'config.json').read_text())
    if model == 'freedom':
        # FREEDOM re-prunes its graph once per epoch: it follows the trainer's batch size.
        assert config['model']['batch_size'] == config['train']['batch_size'] == 2048


@pytest.mark.parametrize('model', ['freedom', 'soil'])
def test_item_graph_refined_plugs_our_graph_in(tmp_path, model):
    out = tmp_path / model
    assert main(['train', SYNTHETIC, '--model', model, '--epochs', '1', '--out', str(out),
                 '--no-progress', '--item-graph', 'refined', '--set', 'graph.alpha=0.5',
                 '--set', 'model.embedding_dim=8']
                + (['--set', 'model.feat_embed_dim=8'] if model == 'freedom' else [])) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['inputs']['item_graph'].startswith('RefineItemGraph(knn_k=10, alpha=0.5')
    assert (out / 'graph' / 'item_graph.pt').exists()
    assert json.loads((out / 'config.json').read_text())['model']['item_graph'] == 'data'
