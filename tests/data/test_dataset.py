import builtins
import gzip
import os

import numpy as np
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
from mllmrec_pyg.data.dataset import (
    DatasetFiles,
    find_dataset_files,
    read_dataset_files,
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
                                   'train': 5, 'val': 2, 'test': 2}


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
                                   'train': 30, 'val': 3, 'test': 3}
    temporal = load_dataset(str(root), split='user_temporal')
    store = temporal[INTERACTS]
    # The latest item of each user (item 11) is its test item.
    assert store.edge_index[1, store.test_mask].tolist() == [11, 11, 11]
    assert store.edge_index[1, store.val_mask].tolist() == [10, 10, 10]
    with pytest.raises(ValueError, match="split='given' needs an 'x_label'"):
        load_dataset(str(root), split='given')


def test_user_temporal_split_by_seq_pos(tmp_path):
    root = tmp_path / 'seq'
    # Each user's seq_pos runs backwards over the item ids: item 0 is the
    # latest, so it is the test item and item 1 the valid one.
    rows = ''.join(f'{u}\t{i}\t0\t{11 - i}\n' for u in range(3) for i in range(12))
    write(root / 'seq.inter', 'userID\titemID\tx_label\tseq_pos\n' + rows)
    assert load_dataset(str(root)).report['split'] == 'given'
    store = load_dataset(str(root), split='user_temporal')[INTERACTS]
    assert store.edge_index[1, store.test_mask].tolist() == [0, 0, 0]
    assert store.edge_index[1, store.val_mask].tolist() == [1, 1, 1]
    assert int(store.train_mask.sum()) == 30
    with pytest.raises(ValueError, match="seq.inter: split='global_temporal' "
                       "needs timestamps"):
        load_dataset(str(root), split='global_temporal')


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
    # (MMRec's rule would hold out both items of every user: no training.)
    data = load_dataset(str(root), k_core=2, split='global_temporal')
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
                                   'train': 24, 'val': 6, 'test': 6}
    assert data.report['k_core'] == 5 and data.report['k_core_removed'] == 3
    assert data['user'].raw_id == [f'U{u}' for u in range(6)]
    assert data['item'].text['title'] == [f'Toy {i}' for i in range(6)]
    assert data['item'].text['categories'][0] == 'Toys > Cars'
    assert data['item'].image[5] == 'http://img/5.jpg'
    assert data.domain == 'Toys'


def test_find_dataset_files_mmrec(tiny_mmrec):
    np.save(tiny_mmrec / 'image_feat.npy', np.zeros((4, 2), dtype=np.float32))
    write(tiny_mmrec / 'notes.tsv', 'what\nnothing keyed\n')
    write(tiny_mmrec / 'dataset.json', '{"domain": "Kitchen"}')
    write(tiny_mmrec / 'tiny.item', 'ignored:token\n')  # RecBole only
    files = find_dataset_files(str(tiny_mmrec))
    root = str(tiny_mmrec)
    assert files == DatasetFiles(
        root=root, format='mmrec', inter=os.path.join(root, 'tiny.inter'),
        side_tables=[os.path.join(root, n) for n in
                     ('notes.tsv', 'tiny.items.tsv', 'u_map.csv')],
        features=[os.path.join(root, 'image_feat.npy')],
        info=os.path.join(root, 'dataset.json'))
    assert [os.path.basename(p) for p in files.paths] == [
        'tiny.inter', 'dataset.json', 'image_feat.npy', 'notes.tsv',
        'tiny.items.tsv', 'u_map.csv']
    raw = read_dataset_files(files)
    # notes.tsv has no itemID / userID column: opened, keyed, but unused.
    assert [os.path.basename(p) for p in raw.files] == [
        'tiny.inter', 'tiny.items.tsv', 'u_map.csv', 'image_feat.npy']
    assert list(raw.item_features) == ['image_feat']


def test_find_dataset_files_recbole_and_amazon(tmp_path):
    root = tmp_path / 'rb'
    write(root / 'sub' / 'rb.inter', 'user_id:token\titem_id:token\na\tx\n')
    write(root / 'sub' / 'rb.user', 'user_id:token\tage:token\na\t30\n')
    write(root / 'other.tsv', 'itemID\ttitle\n0\tMMRec only\n')
    files = find_dataset_files(str(root), inter_file=os.path.join('sub', 'rb.inter'))
    sub = str(root / 'sub')
    assert files == DatasetFiles(root=str(root), format='recbole',
                                 inter=os.path.join(sub, 'rb.inter'),
                                 user_table=os.path.join(sub, 'rb.user'))
    with pytest.raises(FileNotFoundError, match='nope.inter: no such '
                       'interaction file'):
        find_dataset_files(str(root), inter_file='nope.inter')

    root = tmp_path / 'toys'
    write(root / 'ratings_Toys.csv', 'U1,I1,5.0,100\n')
    write(root / 'ratings_Cars.csv', 'U1,I1,5.0,100\n')
    with pytest.raises(FileNotFoundError, match='expected exactly one'):
        find_dataset_files(str(root))
    with pytest.raises(FileNotFoundError, match="'meta_Toys.json.gz' is missing"):
        find_dataset_files(str(root), category='Toys')
    with gzip.open(root / 'meta_Toys.json.gz', 'wt') as f:
        f.write("{'asin': 'I1', 'title': 'Ball'}\n")
    files = find_dataset_files(str(root), category='Toys')
    assert files == DatasetFiles(root=str(root), format='amazon_raw',
                                 inter=str(root / 'ratings_Toys.csv'),
                                 meta=str(root / 'meta_Toys.json.gz'))
    assert files.paths == [files.inter, files.meta]


def _opened_under(monkeypatch, root):
    opened = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            path = os.path.abspath(os.fspath(file))
            if path.startswith(str(root) + os.sep):
                opened.append(path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', recording_open)
    return opened


@pytest.mark.parametrize('layout', ['mmrec', 'recbole_subfolder', 'amazon_raw'])
def test_every_file_read_is_keyed(tmp_path, monkeypatch, layout):
    root = tmp_path / 'data'
    kwargs = {}
    if layout == 'mmrec':
        write(root / 'd.inter', 'userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n')
        write(root / 'd.items.tsv', 'itemID\ttitle\n0\tMug\n')
        write(root / 'extra.csv', 'itemID,brand\n1,Acme\n')
        write(root / 'dataset.json', '{"domain": "Kitchen"}')
        np.save(root / 'image_feat.npy', np.zeros((2, 2), dtype=np.float32))
        changed = [root / 'extra.csv', root / 'image_feat.npy',
                   root / 'dataset.json']
    elif layout == 'recbole_subfolder':
        write(root / 'sub' / 'r.inter', 'user_id:token\titem_id:token\n'
              'a\tx\na\ty\na\tz\nb\tx\nb\ty\nb\tz\n')
        write(root / 'sub' / 'r.item', 'item_id:token\ttitle:token\nx\tAlien\n')
        kwargs['inter_file'] = os.path.join('sub', 'r.inter')
        changed = [root / 'sub' / 'r.item']
    else:
        write(root / 'ratings_Toys.csv', 'U1,I1,5.0,1\nU1,I2,4.0,2\nU1,I3,3.0,3\n')
        with gzip.open(root / 'meta_Toys.json.gz', 'wt') as f:
            f.write("{'asin': 'I1', 'title': 'Ball'}\n")
        kwargs['k_core'] = 0
        changed = [root / 'meta_Toys.json.gz']
    opened = _opened_under(monkeypatch, root)
    dataset = RecDataset(str(root), **kwargs)
    keyed = set(dataset.raw_paths)
    assert set(dataset.files.paths) == keyed
    # Every file the reader (or the domain) opened is part of the key ...
    assert opened and set(opened) <= keyed
    # ... and changing any byte of any of them changes the key.
    for path in changed:
        if path.suffix == '.npy':
            np.save(path, np.ones((2, 2), dtype=np.float32))
        elif path.suffix == '.gz':
            with gzip.open(path, 'wt') as f:
                f.write("{'asin': 'I1', 'title': 'Bat'}\n")
        else:
            path.write_bytes(path.read_bytes() + b'\n')
        again = RecDataset(str(root), **kwargs)
        assert again.key != dataset.key
        dataset = again
