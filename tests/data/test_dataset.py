import os

import pytest
import torch

from mllmrec_pyg.data import (
    INTERACTS,
    REV_INTERACTS,
    RecDataset,
    dataset_stats,
    load_dataset,
    split_edge_index,
    train_edge_index,
)
from tests.conftest import shared_dataset

from .conftest import write


def load_tiny(root, **kwargs):
    with pytest.warns(UserWarning, match=r'1 duplicate user-item pair\(s\) removed '
                      r'\(first at line 9\)'):
        return RecDataset(str(root), **kwargs)


def test_tiny_mmrec_layout(tiny_mmrec):
    dataset = load_tiny(tiny_mmrec)
    assert str(dataset) == 'RecDataset(tiny)'
    data = dataset[0]
    assert data.node_types == ['user', 'item']
    assert set(data.edge_types) == {INTERACTS, REV_INTERACTS}
    store = data[INTERACTS]
    assert store.edge_index.tolist() == [[0, 0, 0, 0, 1, 1, 1, 2, 2],
                                         [0, 1, 2, 3, 1, 2, 0, 2, 0]]
    assert store.train_mask.tolist() == [1, 1, 0, 0, 1, 1, 0, 1, 0]
    assert store.val_mask.tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert store.test_mask.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1]
    rev = data[REV_INTERACTS]
    assert torch.equal(rev.edge_index, store.edge_index.flip(0))
    assert torch.equal(rev.train_mask, store.train_mask)
    # Item 3 appears only in the test split and stays a node.
    assert data['item'].num_nodes == 4
    assert data['user'].raw_id == ['0', '1', '2']
    assert data['item'].raw_id == ['0', '1', '2', '3']
    assert data['item'].text == {'title': ['Red mug', 'Blue {x} lamp', 'Chair', ''],
                                 'brand': ['Acme', '', 'SeatCo', '']}
    assert data['item'].meta == {'asin': ['A0', 'A1', 'A2', '']}
    assert data['item'].image == [os.path.join(str(tiny_mmrec), 'img', '0.png'), None,
                                  'http://example.org/2.jpg', None]
    assert data['user'].meta == {'user_id': ['R0', 'R1', 'R2']}
    assert data['user'].has_train.tolist() == [True, True, True]
    assert data.report['duplicates'] == 1
    assert data.report['cold_start_users'] == 0
    assert data.domain == 'tiny'
    assert dataset_stats(data) == {'users': 3, 'items': 4, 'interactions': 9,
                                   'train': 5, 'valid': 2, 'test': 2}


def test_train_edge_index_is_the_leak_guard(tiny_mmrec):
    data = load_tiny(tiny_mmrec)[0]
    train = train_edge_index(data)
    assert train.tolist() == [[0, 0, 1, 1, 2], [0, 1, 1, 2, 2]]
    held_out = torch.cat([split_edge_index(data, 'val'), split_edge_index(data, 'test')], 1)
    train_pairs = set(map(tuple, train.t().tolist()))
    assert not train_pairs & set(map(tuple, held_out.t().tolist()))
    assert split_edge_index(data, 'all').size(1) == 9
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        split_edge_index(data, 'dev')


def test_processed_file_keyed_by_content_and_parameters(tiny_mmrec):
    first = load_tiny(tiny_mmrec)
    path = first.processed_paths[0]
    mtime = os.path.getmtime(path)
    # Same content and parameters: the processed file is reused.
    again = RecDataset(str(tiny_mmrec))
    assert again.processed_paths[0] == path
    assert os.path.getmtime(path) == mtime
    # Any parameter change gives another key.
    other = load_tiny(tiny_mmrec, seed=1)
    assert other.processed_paths[0] != path
    titles_only = load_tiny(tiny_mmrec, text_fields=('title',))
    assert titles_only.processed_paths[0] not in (path, other.processed_paths[0])
    assert titles_only[0]['item'].text == {'title': ['Red mug', 'Blue {x} lamp',
                                                     'Chair', '']}
    # Any byte of any input file changes the key, and the data.
    inter = tiny_mmrec / 'tiny.inter'
    inter.write_text(inter.read_text() + '2\t1\t0\n')
    changed = load_tiny(tiny_mmrec)
    assert changed.processed_paths[0] != path
    assert changed[0][INTERACTS].edge_index.size(1) == 10
    side = tiny_mmrec / 'tiny.items.tsv'
    side.write_text(side.read_text().replace('Chair', 'Stool'))
    assert load_tiny(tiny_mmrec)[0]['item'].text['title'][2] == 'Stool'


def test_cold_start_users_are_counted(tmp_path):
    root = tmp_path / 'cold'
    write(root / 'cold.inter', 'userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n1\t1\t1\n1\t0\t2\n')
    with pytest.warns(UserWarning, match=r'1 user\(s\) have no training interaction'):
        data = load_dataset(str(root))
    assert data.report['cold_start_users'] == 1
    assert data['user'].has_train.tolist() == [True, False]


def test_split_methods_on_unlabelled_data(tmp_path):
    root = tmp_path / 'plain'
    rows = ''.join(f'{u}\t{i}\t{u * 100 + i}\n' for u in range(3) for i in range(12))
    write(root / 'plain.inter', 'userID\titemID\ttimestamp\n' + rows)
    data = load_dataset(str(root))
    assert data.report['split'] == 'mmrec'
    # k = int(0.2 * 12) = 2 held out per user: 1 valid, 1 test.
    assert dataset_stats(data) == {'users': 3, 'items': 12, 'interactions': 36,
                                   'train': 30, 'valid': 3, 'test': 3}
    temporal = load_dataset(str(root), split='user_temporal')
    store = temporal[INTERACTS]
    # The latest item of each user (item 11) is its test item.
    assert store.edge_index[1, store.test_mask].tolist() == [11, 11, 11]
    assert store.edge_index[1, store.val_mask].tolist() == [10, 10, 10]
    with pytest.raises(ValueError, match="split='given' needs an 'x_label'"):
        load_dataset(str(root), split='given')


def test_recbole_and_k_core(tmp_path):
    root = tmp_path / 'rb'
    lines = ['user_id:token\titem_id:token\trating:float\ttimestamp:float']
    # Users a, b, c rate items x, y, z; user d rates only item w.
    for n, (u, i) in enumerate([('a', 'x'), ('a', 'y'), ('b', 'x'), ('b', 'y'),
                                ('c', 'x'), ('c', 'y'), ('d', 'w')]):
        lines.append(f'{u}\t{i}\t4\t{n}')
    write(root / 'rb.inter', '\n'.join(lines) + '\n')
    write(root / 'rb.item', 'item_id:token\tmovie_title:token_seq\n'
          'x\tAlien\ny\tBrazil\nw\tWho\n')
    data = load_dataset(str(root), k_core=2)
    assert data['user'].raw_id == ['a', 'b', 'c']
    assert data['item'].raw_id == ['x', 'y']
    assert data['item'].text == {'movie_title': ['Alien', 'Brazil']}
    assert data.report['k_core_removed'] == 1
    assert data[INTERACTS].time.dtype == torch.float64


def test_missing_folder_and_ambiguous_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such dataset folder'):
        load_dataset(str(tmp_path / 'nope'))
    write(tmp_path / 'a.inter', 'userID\titemID\n0\t0\n')
    write(tmp_path / 'b.inter', 'userID\titemID\n0\t0\n')
    with pytest.raises(FileNotFoundError, match=r"found \['a.inter', 'b.inter'\]"):
        load_dataset(str(tmp_path))


@pytest.mark.dataset
@pytest.mark.parametrize('name,expected', [
    ('amazon-baby', (19445, 7050, 160792, 118551, 20559, 21682)),
    ('amazon-sports', (35598, 18357, 296337, 218409, 37899, 40029)),
    ('tiktok', (9308, 6710, 68722, 59541, 3051, 6130)),
    ('ml-100k', (943, 1682, 100000, 80367, 9596, 10037)),
])
def test_real_datasets(name, expected):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # TikTok's cold-start users
        data = load_dataset(str(shared_dataset(name)))
    stats = dataset_stats(data)
    assert tuple(stats.values()) == expected
    if name == 'amazon-sports':
        text = data['item'].text['idgenrec_text']
        assert sum(bool(t.strip()) for t in text) == 18357
        assert data.domain == 'Sports and Outdoors'
    if name == 'tiktok':
        assert data['item'].image_feat.shape == (6710, 128)
        assert data['item'].audio_feat.dtype == torch.float32
        assert data.report['cold_start_users'] == 10
    if name == 'ml-100k':
        assert data.report == {'source': 'ml-100k.inter', 'duplicates': 0,
                               'split': 'mmrec', 'seed': 2024,
                               'cold_start_users': 0, 'items_with_text': 1682,
                               'warnings': []}


def test_raw_amazon_is_five_core_filtered_and_split(tmp_path):
    import gzip
    root = tmp_path / 'toys'
    root.mkdir()
    rows = [f'U{u},I{i},5.0,{100 * u + i}' for u in range(6) for i in range(6)]
    rows += ['U9,I0,3.0,1', 'U9,I1,3.0,2', 'U0,I9,1.0,3']  # sparse user and item
    write(root / 'ratings_Toys.csv', '\n'.join(rows) + '\n')
    with gzip.open(root / 'meta_Toys.json.gz', 'wt') as f:
        for i in range(6):
            f.write(f"{{'asin': 'I{i}', 'title': 'Toy {i}', 'brand': 'B', "
                    f"'categories': [['Toys', 'Cars']], 'imUrl': 'http://img/{i}.jpg'}}\n")
    data = load_dataset(str(root))
    assert dataset_stats(data) == {'users': 6, 'items': 6, 'interactions': 36,
                                   'train': 24, 'valid': 6, 'test': 6}
    assert data.report['k_core'] == 5 and data.report['k_core_removed'] == 3
    assert data['user'].raw_id == [f'U{u}' for u in range(6)]
    assert data['item'].text['title'] == [f'Toy {i}' for i in range(6)]
    assert data['item'].text['categories'][0] == 'Toys > Cars'
    assert data['item'].image[5] == 'http://img/5.jpg'
    assert data.domain == 'Toys'
