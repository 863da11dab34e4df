import json

import numpy as np
import pytest

from mllmrec_pyg.experiment import available_recipes, build_config, run_experiment
from mllmrec_pyg.experiment.recipes import SHIPPED

RECIPES = sorted(p.stem for p in SHIPPED.glob('*.json'))


def tiny_folder(root, recipe):
    r"""A 12-user, 16-item MMRec folder in the recipe's shape: its text
    fields (or none, with feature files, when it names none)."""
    root.mkdir()
    rows = ['userID\titemID\tx_label']
    for user in range(12):
        items = [(user + j) % 16 for j in range(6)]
        rows += [f'{user}\t{item}\t{0 if j < 4 else j - 3}' for j, item in enumerate(items)]
    (root / 'tiny.inter').write_text('\n'.join(rows) + '\n')
    fields = recipe.layer.get('dataset', {}).get('text_fields')
    if fields is None and recipe.name != 'tiktok':
        fields = ['title']
    if fields:
        lines = ['itemID\t' + '\t'.join(fields)]
        lines += [f'{i}\t' + '\t'.join(f'{f} of item {i} colour {i % 3}' for f in fields)
                  for i in range(16)]
        (root / 'tiny.items.tsv').write_text('\n'.join(lines) + '\n')
    else:
        generator = np.random.default_rng(0)
        np.save(root / 'image_feat.npy', generator.random((16, 6)).astype(np.float32))
        np.save(root / 'audio_feat.npy', generator.random((16, 4)).astype(np.float32))
    return root


def test_every_recipe_is_found_by_its_name():
    assert sorted(available_recipes()) == RECIPES
    assert {'amazon-baby', 'amazon-sports', 'amazon-clothing', 'ml-100k', 'tiktok'} <= set(
        RECIPES)


@pytest.mark.parametrize('name', RECIPES)
def test_every_shipped_recipe_loads_and_trains_one_epoch(name, tmp_path):
    recipe = available_recipes()[name]
    with open(recipe.path) as f:
        layer = json.load(f)
    assert set(layer) <= {'name', 'description', 'dataset', 'model', 'graph', 'train', 'grid'}
    folder = tiny_folder(tmp_path / 'tiny', recipe)
    has_text = (folder / 'tiny.items.tsv').exists()
    for model in layer['model']:
        if model == 'mllmrec' and not has_text:
            continue
        config = build_config(str(folder), recipe=name, model=model,
                              overrides=['train.max_epochs=1', 'train.ks=[5, 10]',
                                         'train.val_metric="recall@10"'])
        # The recipe's own settings, under the real argument names.
        for key, value in layer['model'][model].items():
            assert config.model[key] == value
        if model == 'mllmrec':
            for key, value in layer['graph'].items():
                assert config.graph[key] == value
        result = run_experiment(str(folder), config, str(tmp_path / f'run-{model}'),
                                progress=False)
        assert result.metrics['epochs_trained'] == 1
        assert result.metrics['model'] == model
        assert 0.0 <= result.test['recall@10'] <= 1.0
