import sqlite3

import pytest

from mllmrec_pyg.llm.cache import GenerationCache, generation_key

IDENTITY = {'backend': 'fake', 'model': 'm', 'params': {'seed': 0}}


def test_key_covers_every_input():
    base = generation_key(IDENTITY, 'prompt', 'img')
    assert base == generation_key(dict(IDENTITY), 'prompt', 'img')
    assert len({
        base,
        generation_key({**IDENTITY, 'backend': 'other'}, 'prompt', 'img'),
        generation_key({**IDENTITY, 'model': 'm2'}, 'prompt', 'img'),
        generation_key({**IDENTITY, 'params': {'seed': 1}}, 'prompt', 'img'),
        generation_key(IDENTITY, 'prompt!', 'img'),
        generation_key(IDENTITY, 'prompt', 'img2'),
    }) == 6


def test_put_get_failures_and_export(tmp_path):
    path = tmp_path / 'c.sqlite'
    with GenerationCache(str(path)) as cache:
        assert str(cache) == f"GenerationCache('{path}')"
        cache.put('k1', identity=IDENTITY, task='prefer', subject='u1',
                  prompt='p1', text='likes mugs', completion_tokens=2)
        cache.put('k2', identity=IDENTITY, task='prefer', subject='u2',
                  prompt='p2', error='HTTP 500')
        assert cache.get('k1').text == 'likes mugs'
        assert cache.get('k2') is None  # failed: redone next run
        assert cache.entry('k2').error == 'HTTP 500'
        assert [e.subject for e in cache.failures('prefer')] == ['u2']
        # A failure never replaces a finished generation.
        cache.put('k1', identity=IDENTITY, task='prefer', subject='u1',
                  prompt='p1', error='late')
        assert cache.get('k1').text == 'likes mugs'
        cache.put('k2', identity=IDENTITY, task='prefer', subject='u2',
                  prompt='p2', text='fixed')
        assert cache.entry('k2').attempts == 2
        assert cache.counts() == {'ok': 2} and len(cache) == 2
        with pytest.raises(ValueError, match='exactly one'):
            cache.put('k3', identity=IDENTITY, task='t', subject='s',
                      prompt='p')
        assert cache.export(str(tmp_path / 'c.csv')) == 2
        with pytest.raises(ValueError, match="'.csv' or '.parquet'"):
            cache.export(str(tmp_path / 'c.xlsx'))
    text = (tmp_path / 'c.csv').read_text()
    assert 'likes mugs' in text and 'fixed' in text

    # WAL mode, and rows committed as written (visible to another reader).
    conn = sqlite3.connect(path)
    assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    assert conn.execute('SELECT COUNT(*) FROM generations').fetchone()[0] == 2


def test_export_parquet(tmp_path):
    pytest.importorskip('pyarrow')
    with GenerationCache(str(tmp_path / 'c.sqlite')) as cache:
        cache.put('k', identity=IDENTITY, task='describe', subject='i',
                  prompt='p', text='t')
        assert cache.export(str(tmp_path / 'c.parquet')) == 1
