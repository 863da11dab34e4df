import numpy as np
from PIL import Image

from mllmrec_pyg.data import INTERACTS, SyntheticCatalog, load_dataset, synthetic_folder
from mllmrec_pyg.data.synthetic import ATTRIBUTES


def test_generation_is_seeded(tmp_path):
    SyntheticCatalog(num_users=20, num_items=30, seed=3).generate(str(tmp_path / 'a'))
    SyntheticCatalog(num_users=20, num_items=30, seed=3).generate(str(tmp_path / 'b'))
    SyntheticCatalog(num_users=20, num_items=30, seed=4).generate(str(tmp_path / 'c'))
    a = (tmp_path / 'a' / 'synthetic.inter').read_bytes()
    assert a == (tmp_path / 'b' / 'synthetic.inter').read_bytes()
    assert a != (tmp_path / 'c' / 'synthetic.inter').read_bytes()


def test_default_catalogue():
    data = load_dataset('synthetic:users=60,items=40,seed=1')
    assert data['user'].num_nodes == 60
    assert data['item'].num_nodes == 40
    assert data.domain == 'Home and Fashion'
    assert set(data['item'].text) == {'title', 'brand', 'categories', 'description'}
    with Image.open(data['item'].image[0]) as image:
        assert image.format == 'PNG' and image.size == (64, 64)
    # Every user keeps training items, and times exist for temporal policies.
    assert bool(data['user'].has_train.all())
    assert data[INTERACTS].time is not None
    assert synthetic_folder('synthetic:users=60,items=40,seed=1') == synthetic_folder(
        'synthetic:seed=1,items=40,users=60')


def _taste_of_chosen_categories(spec):
    folder = synthetic_folder(spec)
    data = load_dataset(folder)
    taste = np.load(f'{folder}/user_taste.npy')
    categories = list(ATTRIBUTES['category'])
    item_cat = np.array([categories.index(c) for c in data['item'].meta['category']])
    user, item = data[INTERACTS].edge_index.numpy()
    return float(taste[user, item_cat[item]].mean())


def test_tastes_generate_the_interactions():
    # The mean taste weight of the chosen items' categories: about
    # 1 / #categories for taste-blind users, far above it for the default.
    blind = _taste_of_chosen_categories('synthetic:users=200,items=80,seed=2,sharpness=0')
    default = _taste_of_chosen_categories('synthetic:users=200,items=80,seed=2')
    assert abs(blind - 1 / len(ATTRIBUTES['category'])) < 0.02
    assert default > 1.5 * blind
