import hashlib

import pytest

from mllmrec_pyg.llm.shard import Shard, parse_shard, shard_of


def test_shard_of_is_a_stable_hash_of_the_raw_id():
    assert [shard_of(str(i), 2) for i in range(6)] == [0, 1, 0, 1, 0, 1]
    assert [shard_of(str(i), 3) for i in range(6)] == [0, 1, 1, 1, 1, 2]
    assert shard_of('A1B2', 5) == 2
    assert shard_of('anything', 1) == 0
    # The definition: the first 8 bytes of SHA-256, big-endian, mod N.
    digest = hashlib.sha256(b'A1B2').digest()
    assert shard_of('A1B2', 5) == int.from_bytes(digest[:8], 'big') % 5
    with pytest.raises(ValueError, match='count must be >= 1'):
        shard_of('0', 0)


def test_shards_partition_the_ids():
    ids = [f'user-{i}' for i in range(50)]
    shares = [Shard(i, 3).select(ids) for i in (1, 2, 3)]
    assert sorted(sum(shares, [])) == list(range(50))
    assert all(shares)
    assert Shard(1, 2).select(['0', '1', '2', '3', '4', '5']) == [0, 2, 4]
    # Among given candidates, in the order given.
    assert Shard(2, 2).select(['0', '1', '2', '3', '4', '5'], [5, 1, 0]) == [5, 1]
    assert Shard(1, 1).select(['a', 'b']) == [0, 1]
    assert Shard(2, 2).contains('1') and not Shard(2, 2).contains('0')


def test_parse_shard():
    assert parse_shard('1/2') == Shard(1, 2)
    assert parse_shard(' 2/2 ') == Shard(2, 2)
    assert str(parse_shard('3/4')) == '3/4'
    for text in ('0/2', '3/2', '1/0', 'x', '1/2/3', '-1/2', '1.0/2', '/2', ''):
        with pytest.raises(ValueError) as info:
            parse_shard(text)
        assert str(info.value) == (
            f"--shard {text!r}: expected I/N with 1 <= I <= N (1-based: "
            "'--shard 1/2' and '--shard 2/2' are the two halves)")
    with pytest.raises(ValueError, match="--shard '0/1'"):
        Shard(0, 1)
