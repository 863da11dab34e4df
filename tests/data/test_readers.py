import gzip

import pytest

from mllmrec_pyg.data.readers import (
    find_amazon_raw,
    read_amazon_meta,
    read_amazon_ratings,
    read_amazon_raw,
    read_mmrec_inter,
    read_recbole_inter,
)

from .conftest import write


def test_read_mmrec_inter(tmp_path):
    path = write(tmp_path / 'a.inter', 'userID\titemID\tx_label\n0\t3\t0\n1\t2\t2\n')
    df = read_mmrec_inter(str(path))
    assert df['user'].tolist() == [0, 1]
    assert df['item'].tolist() == [3, 2]
    assert df['label'].tolist() == [0, 2]
    assert df['line'].tolist() == [2, 3]
    assert 'order' not in df.columns and 'time' not in df.columns
    # MMRec's seq_pos (each user's chronological position) is the order.
    path = write(tmp_path / 'b.inter', 'userID\titemID\tx_label\tseq_pos\n'
                 '0\t3\t0\t1\n0\t2\t2\t0\n')
    df = read_mmrec_inter(str(path))
    assert df['order'].tolist() == [1, 0] and 'time' not in df.columns


@pytest.mark.parametrize('text,match', [
    ('', 'empty'),
    ('userID\titemID\tx_label\n', 'no rows'),
    ('user\titemID\n0\t1\n', r"line 1: missing column\(s\) \['userID'\]"),
    ('userID\titemID\n0\t1\n1\tabc\n', r"line 3: column 'itemID' holds 'abc'"),
    ('userID\titemID\n0\t1\n-1\t1\n', r"line 3: column 'userID' holds '-1'"),
    ('userID\titemID\tx_label\n0\t1\t0\n0\t2\t3\n', r"line 3: column 'x_label' holds '3'.*\[0, 1, 2\]"),
    ('userID\titemID\n0\t1.5\n', r"line 2: column 'itemID'"),
    ('userID\titemID\tseq_pos\n0\t1\t0\n0\t2\tx\n', r"line 3: column 'seq_pos' holds 'x'"),
])
def test_read_mmrec_inter_errors(tmp_path, text, match):
    path = write(tmp_path / 'bad.inter', text)
    with pytest.raises(ValueError, match=match) as info:
        read_mmrec_inter(str(path))
    assert 'bad.inter' in str(info.value)


def test_read_recbole_inter(tmp_path):
    path = write(tmp_path / 'm.inter', 'user_id:token\titem_id:token\trating:float\t'
                 'timestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n')
    df = read_recbole_inter(str(path))
    assert df['user'].tolist() == ['196', '186']
    assert df['time'].tolist() == [881250949.0, 891717742.0]
    assert df['rating'].tolist() == [3.0, 3.0]
    bad = write(tmp_path / 'b.inter', 'user_id\titem_id:token\n1\t2\n')
    with pytest.raises(ValueError, match="line 1: header field 'user_id' has no ':type'"):
        read_recbole_inter(str(bad))


def test_read_amazon_raw(tmp_path):
    write(tmp_path / 'ratings_Toys.csv', 'U1,I1,5.0,100\nU2,I1,4.0,200\n')
    with gzip.open(tmp_path / 'meta_Toys.json.gz', 'wt') as f:
        f.write("{'asin': 'I1', 'title': 'Ball', 'categories': [['Toys', 'Balls']], "
                "'imUrl': 'http://x/1.jpg'}\n")
        f.write('{"asin": "I2", "title": "Kite", "brand": "Sky"}\n')
    inter, items, files = read_amazon_raw(str(tmp_path))
    assert inter['user'].tolist() == ['U1', 'U2']
    assert inter['time'].tolist() == [100, 200]
    assert items.loc['I1', 'categories'] == 'Toys > Balls'
    assert items.loc['I2', 'brand'] == 'Sky'
    assert [p.rsplit('/', 1)[1] for p in files] == ['ratings_Toys.csv', 'meta_Toys.json.gz']


def test_read_amazon_raw_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='ratings_<Category>.csv.*place both files'):
        read_amazon_raw(str(tmp_path))
    write(tmp_path / 'ratings_Toys.csv', 'U1,I1,5.0,100\n')
    with pytest.raises(FileNotFoundError, match="'meta_Toys.json.gz' is missing"):
        read_amazon_raw(str(tmp_path))


def test_find_amazon_raw(tmp_path):
    write(tmp_path / 'ratings_Toys.csv', 'U1,I1,5.0,100\n')
    write(tmp_path / 'ratings_Cars.csv', 'U1,I1,5.0,100\n')
    write(tmp_path / 'meta_Cars.json.gz', '')
    with pytest.raises(FileNotFoundError, match=r"found \['ratings_Cars.csv', "
                       r"'ratings_Toys.csv'\]"):
        find_amazon_raw(str(tmp_path))
    assert find_amazon_raw(str(tmp_path), 'Cars') == (
        str(tmp_path / 'ratings_Cars.csv'), str(tmp_path / 'meta_Cars.json.gz'))


def test_read_amazon_ratings(tmp_path):
    path = write(tmp_path / 'ratings_Toys.csv', 'U1,I1,5.0,100\nU2,I3,4.5,200\n')
    df = read_amazon_ratings(str(path))
    assert df.columns.tolist() == ['user', 'item', 'rating', 'time', 'line']
    assert df['item'].tolist() == ['I1', 'I3']
    assert df['rating'].tolist() == [5.0, 4.5]
    assert df['line'].tolist() == [1, 2]
    bad = write(tmp_path / 'ratings_Bad.csv', 'U1,I1,5.0,100\nU2,I1,x,200\n')
    with pytest.raises(ValueError, match=r"ratings_Bad.csv, line 2: rating 'x' "
                       'is not a number'):
        read_amazon_ratings(str(bad))


def test_read_amazon_meta(tmp_path):
    path = tmp_path / 'meta_Toys.json.gz'
    with gzip.open(path, 'wt') as f:
        f.write("{'asin': 'I1', 'title': 'Ball', 'price': 2.5}\n\n")
        f.write("{'title': 'no asin'}\n")
        f.write("{'asin': 'I1', 'title': 'Again'}\n")
    items = read_amazon_meta(str(path))
    assert items.index.tolist() == ['I1']
    assert items.loc['I1'].tolist() == ['I1', 'Ball', '', '', '', '', '2.5']
