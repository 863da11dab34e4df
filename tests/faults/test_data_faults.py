r"""The data rows of the fault table (issue 13): every bad input gets a clear
one-line error naming the file and the fix, nothing in a processed file can
run code, and no bad input gives a silently wrong dataset."""
import gzip
import os
import pathlib
import re
import warnings

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import INTERACTS, RecDataset, load_dataset
from mllmrec_pyg.data.build import build_hetero_data, duplicate_label_conflicts
from mllmrec_pyg.data.dataset import load_processed
from mllmrec_pyg.data.readers import RawDataset, read_item_features
from mllmrec_pyg.llm.text import WordTokenizer
from mllmrec_pyg.pipeline import encode_item_descriptions, encode_item_texts
from mllmrec_pyg.transforms import ThresholdKNN

HEADER = 'userID\titemID\tx_label\n'


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return path


def tiny(tmp_path: pathlib.Path, name: str = 'tiny') -> pathlib.Path:
    r"""Two users, four items, each user with a train, a valid and a test
    interaction."""
    root = tmp_path / name
    write(root / f'{name}.inter', HEADER + '0\t0\t0\n0\t1\t1\n0\t2\t2\n'
          '1\t1\t0\n1\t2\t1\n1\t3\t2\n')
    write(root / f'{name}.items.tsv', 'itemID\ttitle\n0\tMug\n1\tLamp\n2\tChair\n3\tRug\n')
    return root


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert '\n' not in message
    return message


def same_graph(a: HeteroData, b: HeteroData) -> None:
    assert a[INTERACTS].edge_index.tolist() == b[INTERACTS].edge_index.tolist()
    assert a[INTERACTS].train_mask.tolist() == b[INTERACTS].train_mask.tolist()
    assert a['item'].raw_id == b['item'].raw_id
    assert a['item'].text == b['item'].text


# 1. The processed file ######################################################

class _Touch:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class _System:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.parametrize('payload', [_Touch, _System])
def test_crafted_processed_file_never_runs_and_is_reprocessed(tmp_path, payload):
    root = tiny(tmp_path)
    fresh = RecDataset(str(root))
    path = fresh.processed_paths[0]
    marker = tmp_path / 'EXECUTED'
    torch.save({'data': payload(marker)}, path)
    with pytest.warns(UserWarning) as caught:
        again = RecDataset(str(root))
    assert not marker.exists()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and '\n' not in messages[0]
    assert messages[0].startswith(f'{path}: cannot load the processed file with '
                                  'weights_only=True (UnpicklingError: ')
    assert messages[0].endswith(f'); reprocessing it from the raw files in {root}')
    same_graph(again[0], fresh[0])
    # The reprocessed file is a safe one again: no warning the next time.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        same_graph(RecDataset(str(root))[0], fresh[0])
    assert not marker.exists()


def test_crafted_pre_transform_file_is_never_read(tmp_path):
    # PyG's Dataset._process unpickles pre_transform.pt with weights_only=False.
    root = tiny(tmp_path)
    fresh = RecDataset(str(root))
    marker = tmp_path / 'EXECUTED'
    for name in ('pre_transform.pt', 'pre_filter.pt'):
        torch.save(_Touch(marker), os.path.join(fresh.processed_dir, name))
    same_graph(RecDataset(str(root))[0], fresh[0])
    assert not marker.exists()


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty', 'other'])
def test_corrupt_processed_file_is_reprocessed(tmp_path, damage):
    root = tiny(tmp_path)
    fresh = RecDataset(str(root))
    path = fresh.processed_paths[0]
    data = pathlib.Path(path).read_bytes()
    if damage == 'other':
        torch.save({'a': torch.ones(2)}, path)
    else:
        pathlib.Path(path).write_bytes({'truncated': data[:len(data) // 2],
                                        'garbage': b'\x00junk' * 10,
                                        'empty': b''}[damage])
    reason = ('not a processed HeteroData file' if damage == 'other' else
              'cannot load the processed file with weights_only=True')
    with pytest.warns(UserWarning, match=re.escape(f'{path}: {reason}')):
        again = RecDataset(str(root))
    same_graph(again[0], fresh[0])
    assert sorted(os.listdir(fresh.processed_dir)) == ['data.pt']  # no .tmp left


def test_load_processed_errors_name_the_file(tmp_path):
    path = tmp_path / 'data.pt'
    path.write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(ValueError, match=re.escape(f'{path}: cannot load the '
                                                   'processed file with weights_only=True (')):
        load_processed(str(path))


# 2. Feature files and ids ##################################################

@pytest.mark.parametrize('rows', [5, 3])
def test_feature_file_with_more_or_fewer_rows_than_items(tmp_path, rows):
    root = tiny(tmp_path)
    feat = root / 'image_feat.npy'
    np.save(feat, np.ones((rows, 2), dtype=np.float32))
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f'{feat} has {rows} rows but the dataset has 4 items (itemIDs 0..3 in '
        'tiny.inter; row i must be item i): give the file one row per item')


def test_feature_file_with_one_row_per_item_is_kept(tmp_path):
    root = tiny(tmp_path)
    feat = np.arange(8, dtype=np.float64).reshape(4, 2)
    np.save(root / 'image_feat.npy', feat)
    data = load_dataset(str(root))
    assert data['item'].num_nodes == 4
    assert data['item'].image_feat.tolist() == feat.tolist()


def sparse_inter(root: pathlib.Path, big: int) -> pathlib.Path:
    rows = [f'{u}\t{u * 6 + j}\t{0 if j < 4 else j - 3}' for u in range(6)
            for j in range(6)]
    rows[20] = rows[20].split('\t')[0] + f'\t{big}\t0'  # line 22
    return write(root / 'big.inter', HEADER + '\n'.join(rows) + '\n')


def test_huge_integer_id_fails_fast(tmp_path):
    root = tmp_path / 'big'
    inter = sparse_inter(root, 10**12)
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f'{inter}, line 22: itemID 1000000000000 is far beyond the 36 distinct '
        'itemIDs (MMRec ids are 0-based node indices, so this would make '
        '1000000000001 item nodes). Renumber the itemIDs 0..35, or pass '
        'remap_ids=True (a config: dataset.remap_ids: true) to renumber them in '
        'id order')


def test_huge_user_id_fails_fast(tmp_path):
    root = tmp_path / 'users'
    inter = write(root / 'users.inter', HEADER + '0\t0\t0\n0\t1\t1\n0\t2\t2\n'
                  '5000\t0\t0\n5000\t1\t1\n5000\t2\t2\n')
    with pytest.raises(ValueError, match=re.escape(
            f'{inter}, line 5: userID 5000 is far beyond the 2 distinct userIDs')):
        RecDataset(str(root))


def test_remap_ids_renumbers_with_a_warning(tmp_path):
    root = tmp_path / 'big'
    inter = sparse_inter(root, 10**12)
    write(root / 'big.items.tsv', f'itemID\ttitle\n0\tMug\n{10**12}\tBig\n')
    with pytest.warns(UserWarning, match=re.escape(
            f'{inter}: remap_ids=True renumbered the 36 itemIDs 0.. in id order '
            "(raw_id keeps the file's ids)")):
        dataset = RecDataset(str(root), remap_ids=True)
    data = dataset[0]
    assert data['item'].num_nodes == 36
    assert data['item'].raw_id[0] == '0' and data['item'].raw_id[-1] == str(10**12)
    assert data['item'].text['title'][0] == 'Mug'
    assert data['item'].text['title'][-1] == 'Big'
    assert data.report['remap_ids'] is True


def test_remap_ids_takes_feature_rows_at_the_file_ids(tmp_path):
    root = tmp_path / 'gaps'
    write(root / 'gaps.inter', HEADER + '0\t0\t0\n0\t2\t1\n0\t5\t2\n'
          '1\t2\t0\n1\t5\t1\n1\t0\t2\n')
    feat = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(root / 'image_feat.npy', feat)
    with pytest.warns(UserWarning, match='renumbered the 3 itemIDs'):
        remapped = RecDataset(str(root), remap_ids=True)
    data = remapped[0]
    assert data['item'].raw_id == ['0', '2', '5']
    assert data['item'].image_feat.tolist() == feat[[0, 2, 5]].tolist()
    assert data[INTERACTS].edge_index[1].tolist() == [0, 1, 2, 1, 2, 0]
    # Without it, ids are node indices: items 1, 3, 4 exist without
    # interactions; remap_ids is part of the processed file's key.
    plain = RecDataset(str(root))
    assert plain.key != remapped.key
    assert plain[0]['item'].image_feat.tolist() == feat.tolist()


def test_k_core_takes_feature_rows_at_the_file_ids(tmp_path):
    root = tmp_path / 'core'
    rows = [f'{u}\t{i}' for u in range(3) for i in range(3)] + ['3\t3']
    write(root / 'core.inter', 'userID\titemID\n' + '\n'.join(rows) + '\n')
    feat = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.save(root / 'image_feat.npy', feat)
    data = load_dataset(str(root), k_core=2)
    assert data['item'].raw_id == ['0', '1', '2']
    assert data['item'].image_feat.tolist() == feat[:3].tolist()


@pytest.mark.parametrize('array,what', [
    (np.ones(4, dtype=np.float32), 'it is 1-D (shape (4,)), not [num_items, dim]'),
    (np.ones((4, 2, 2), dtype=np.float32),
     'it is 3-D (shape (4, 2, 2)), not [num_items, dim]'),
    (np.array([['a', 'b']] * 4), 'it holds <U1 values, not numbers'),
    (np.array([[{'x': 1}]] * 4, dtype=object), 'it holds an object (pickled) array'),
])
def test_feature_file_of_the_wrong_kind(tmp_path, array, what):
    root = tiny(tmp_path)
    feat = root / 'audio_feat.npy'
    np.save(feat, array, allow_pickle=True)
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f'{feat}: {what}. Save a 2-D float array [num_items, dim] with '
        'numpy.save (row i = item i)')


def test_feature_file_with_nan_or_inf(tmp_path):
    root = tiny(tmp_path)
    feat = root / 'image_feat.npy'
    values = np.ones((4, 3))
    values[1, 0] = np.nan
    values[2, 1] = np.inf
    values[3, 2] = 1e300  # beyond float32: inf once stored
    np.save(feat, values)
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f'{feat}: it holds 3 NaN or infinite value(s) (as float32; first in '
        'row 1). Replace them with finite values')


def test_pickled_feature_file_never_runs(tmp_path):
    marker = tmp_path / 'EXECUTED'
    path = tmp_path / 'x_feat.npy'
    import pickle
    path.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(ValueError, match=re.escape(f'{path}: it holds an object')):
        read_item_features(str(path))
    assert not marker.exists()


# 3. Duplicate pairs with conflicting labels #################################

def test_duplicates_with_conflicting_labels_are_reported(tmp_path):
    root = tmp_path / 'dup'
    inter = write(root / 'dup.inter', HEADER +
                  '0\t0\t0\n0\t1\t0\n0\t2\t1\n0\t3\t2\n'
                  '0\t0\t0\n'     # line 6: same label
                  '0\t1\t2\n'     # line 7: kept train, conflicting test
                  '1\t0\t0\n1\t1\t1\n1\t2\t2\n'
                  '1\t2\t0\n'     # line 11: kept test, conflicting train
                  '1\t1\t1\n1\t1\t0\n')  # lines 12-13: kept val, conflict
    with pytest.warns(UserWarning) as caught:
        data = load_dataset(str(root))
    assert [str(w.message) for w in caught] == [
        f'{inter}: 5 duplicate user-item pair(s) removed (first at line 6); 3 '
        'had conflicting split labels (kept the first: 1 train, 1 val, 1 test)']
    assert data.report['duplicates'] == 5
    assert data.report['duplicate_label_conflicts'] == {
        'pairs': 3, 'kept': {'train': 1, 'val': 1, 'test': 1}}


def test_duplicates_without_conflict_keep_the_old_message():
    import pandas as pd
    inter = pd.DataFrame({'user': [0, 0, 0], 'item': [1, 1, 2], 'label': [0, 0, 2],
                          'line': [2, 3, 4]})
    assert duplicate_label_conflicts(inter) == {'pairs': 0, 'kept': {}}
    raw = RawDataset(inter=inter, source='a.inter', integer_ids=True)
    with pytest.warns(UserWarning, match=re.escape(
            'a.inter: 1 duplicate user-item pair(s) removed (first at line 3); '
            'the first occurrence of each pair is kept')):
        data = build_hetero_data(raw)
    assert data.report['duplicate_label_conflicts'] == {'pairs': 0, 'kept': {}}


# 4. Items without text #####################################################

class FakeEncoder:
    r"""Embeds a text as [len, number of vowels, 1]; records its calls."""
    dim = 3
    tokenizer = WordTokenizer()

    def __init__(self):
        self.calls = []

    def token_budget(self) -> int:
        return 256

    def encode(self, texts):
        self.calls.append(texts)
        return torch.tensor([[len(t), sum(c in 'aeiou' for c in t), 1.0]
                             for t in texts], dtype=torch.float64).view(-1, 3)


def test_encode_item_texts_zero_vectors_for_empty_texts():
    encoder = FakeEncoder()
    texts = ['red mug', '', 'blue lamp', '  ']
    with pytest.warns(UserWarning) as caught:
        x, empty = encode_item_texts(encoder, texts)
    assert [str(w.message) for w in caught] == [
        '2 items have no text: they get a zero feature vector and no similarity edge']
    assert empty == 2 and x.dtype == torch.float32
    assert encoder.calls == [['red mug', 'blue lamp']]
    assert x.tolist() == [[7, 2, 1], [0, 0, 0], [9, 3, 1], [0, 0, 0]]
    # The zero rows get no k-NN edge, even with the reference's self-loops.
    for include_self in (False, True):
        data = HeteroData()
        data['item'].x = x
        edges = ThresholdKNN(k=3, alpha=None, include_self=include_self)(data)
        edge_index = edges['item', 'knn', 'item'].edge_index
        assert not set(edge_index.view(-1).tolist()) & {1, 3}


def test_encode_item_texts_without_empty_texts_is_the_plain_encoding():
    encoder = FakeEncoder()
    texts = ['red mug', 'blue lamp']
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        x, empty = encode_item_texts(encoder, texts)
    assert empty == 0 and encoder.calls == [texts] and encoder.calls[0] is texts
    assert torch.equal(x, encoder.encode(texts).float())
    with pytest.warns(UserWarning, match='3 items have no text'):
        x, empty = encode_item_texts(FakeEncoder(), ['', '', ''])
    assert empty == 3 and x.tolist() == [[0, 0, 0]] * 3


def test_encode_item_descriptions_counts_the_empty_items(tmp_path):
    root = tiny(tmp_path)
    write(root / 'tiny.items.tsv', 'itemID\ttitle\n0\tMug\n2\tChair\n')
    data = load_dataset(str(root))
    with pytest.warns(UserWarning, match='2 items have no text'):
        x, items = encode_item_descriptions(data, FakeEncoder())
    assert items.counts['empty'] == 2
    assert x[[1, 3]].abs().sum() == 0 and bool((x[[0, 2]] != 0).all())


# 5. Files that cannot be read ##############################################

@pytest.mark.parametrize('encoding', ['utf-16', 'utf-16-le', 'latin-1'])
def test_inter_file_not_utf8(tmp_path, encoding):
    root = tmp_path / 'enc'
    root.mkdir()
    inter = root / 'enc.inter'
    inter.write_bytes((HEADER + '0\t0\t0\n0\t1\t1\n0\t2\t2\n'
                       + ('1\t0\t0 caf\xe9\n' if encoding == 'latin-1' else ''))
                      .encode(encoding))
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    expected = {
        'utf-16': f'{inter}: the file is UTF-16 encoded, not UTF-8. Save it as '
                  'UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)',
        'utf-16-le': f'{inter}, line 1: the file holds NUL bytes (UTF-16 without '
                     'a byte-order mark, or not text). Save it as UTF-8 text',
        'latin-1': f'{inter}, line 5: byte 0xe9 (offset 49) is not UTF-8. Save '
                   'the file as UTF-8 (e.g. iconv -f latin1 -t UTF-8)',
    }[encoding]
    assert one_line(info.value) == expected


def test_side_table_not_utf8(tmp_path):
    root = tiny(tmp_path)
    side = root / 'tiny.items.tsv'
    side.write_bytes('itemID\ttitle\n0\tMug\n1\tCaf\xe9\n'.encode('latin-1'))
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value).startswith(f'{side}, line 3: byte 0xe9')


@pytest.mark.parametrize('row,fields', [('0\t3\t0\t7', 4), ('0\t3', 2)])
def test_inter_row_with_the_wrong_number_of_fields(tmp_path, row, fields):
    root = tiny(tmp_path)
    inter = root / 'tiny.inter'
    inter.write_text(inter.read_text() + '\n' + row + '\n')  # a blank line 8
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f"{inter}, line 9: {fields} field(s) where the header has 3. Give every "
        "row one value per column, separated by '\\t'")


def test_side_table_row_with_the_wrong_number_of_fields(tmp_path):
    root = tiny(tmp_path)
    side = write(root / 'extra.csv', 'itemID,brand,colour\n0,"Acme, Inc.",red\n1,Lux\n')
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f"{side}, line 3: 2 field(s) where the header has 3. Give every row one "
        "value per column, separated by ','")


def test_unrelated_table_is_skipped_from_its_header(tmp_path):
    root = tiny(tmp_path)
    write(root / 'notes.csv', 'note,author\nragged row\n"a, b",c,d\n')
    assert load_dataset(str(root))['item'].text['title'] == ['Mug', 'Lamp', 'Chair', 'Rug']
    (root / 'notes.csv').write_bytes('note\n'.encode('utf-16'))
    with pytest.raises(ValueError, match=re.escape(
            f"{root / 'notes.csv'}: the file is UTF-16 encoded")):
        RecDataset(str(root))


def amazon(tmp_path: pathlib.Path, ratings: str = None, meta: bytes = None):
    root = tmp_path / 'toys'
    rows = [f'U{u},I{i},5.0,{10 * u + i}' for u in range(3) for i in range(3)]
    write(root / 'ratings_Toys.csv', ratings or '\n'.join(rows) + '\n')
    path = root / 'meta_Toys.json.gz'
    path.write_bytes(meta if meta is not None else gzip.compress(
        b"{'asin': 'I0', 'title': 'Ball'}\n"))
    return root


def test_amazon_ratings_row_with_the_wrong_number_of_fields(tmp_path):
    root = amazon(tmp_path, ratings='U1,I1,5.0,1\nU1,I2,4.0\n')
    with pytest.raises(ValueError) as info:
        RecDataset(str(root), k_core=0)
    assert one_line(info.value) == (
        f"{root / 'ratings_Toys.csv'}, line 2: 3 field(s) where expected 4. Give "
        "every row one value per column, separated by ','")


@pytest.mark.parametrize('damage', ['not_gzip', 'truncated'])
def test_amazon_meta_bad_gzip(tmp_path, damage):
    whole = gzip.compress(b"{'asin': 'I0', 'title': 'Ball'}\n" * 200)
    meta = b'{"asin": "I0"}\n' if damage == 'not_gzip' else whole[:len(whole) // 2]
    root = amazon(tmp_path, meta=meta)
    with pytest.raises(ValueError) as info:
        RecDataset(str(root), k_core=0)
    message = one_line(info.value)
    assert message.startswith(f"{root / 'meta_Toys.json.gz'}: not a valid gzip file (")
    assert message.endswith('). The download is corrupt or truncated: download it again')


@pytest.mark.parametrize('depth', [300, 5000])
def test_amazon_meta_deeply_nested(tmp_path, depth):
    line = '{"asin": "I1", "x": ' + '[' * depth + ']' * depth + '}'
    if depth == 300:
        line = line.replace('"', "'")  # not JSON, and too deep for Python
    root = amazon(tmp_path, meta=gzip.compress(
        b"{'asin': 'I0'}\n" + line.encode() + b'\n'))
    with pytest.raises(ValueError) as info:
        RecDataset(str(root), k_core=0)
    assert one_line(info.value) == (
        f"{root / 'meta_Toys.json.gz'}, line 2: nested too deeply to parse. Each "
        'line of an Amazon 2014 meta file holds one product dict')


def test_amazon_meta_not_utf8(tmp_path):
    root = amazon(tmp_path, meta=gzip.compress("{'asin': 'I0', 'title': 'Caf\xe9'}\n"
                                               .encode('latin-1')))
    with pytest.raises(ValueError) as info:
        RecDataset(str(root), k_core=0)
    assert one_line(info.value) == (
        f"{root / 'meta_Toys.json.gz'}, line 1: not UTF-8 text. Save the file as UTF-8")


def test_no_training_edges(tmp_path):
    root = tmp_path / 'none'
    inter = write(root / 'none.inter', HEADER + '0\t0\t1\n0\t1\t2\n1\t0\t2\n')
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value) == (
        f"{inter}: split='given' puts none of the 3 interactions in training: "
        "label some interactions 0 (train) in 'x_label', or use split='mmrec' to "
        'draw a split')
    with pytest.raises(ValueError, match=re.escape(
            f"{inter}: split='mmrec' puts none of the 3 interactions in training")):
        RecDataset(str(root), split='mmrec')


def test_dataset_json_not_json(tmp_path):
    root = tiny(tmp_path)
    info_file = write(root / 'dataset.json', '{"domain": ')
    with pytest.raises(ValueError) as info:
        RecDataset(str(root))
    assert one_line(info.value).startswith(f'{info_file}: not a UTF-8 JSON object (')
