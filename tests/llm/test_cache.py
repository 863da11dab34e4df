import hashlib
import json
import sqlite3

import pytest

from mllmrec_pyg.llm.cache import (
    GenerationCache,
    generation_key,
    generations_saved,
)

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


def test_key_of_the_system_message_and_of_earlier_versions():
    # No system message: the key of earlier versions (their caches stay
    # valid for the same settings).
    old = hashlib.sha256(json.dumps(
        {'identity': IDENTITY, 'prompt': 'prompt', 'image_sha256': ''},
        sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert generation_key(IDENTITY, 'prompt') == old
    assert generation_key(IDENTITY, 'prompt', system='') == old
    assert generation_key(IDENTITY, 'prompt', system='Be brief.') not in (
        old, generation_key(IDENTITY, 'prompt', system='Be long.'))
    # The decoding settings are generation parameters: in the key.
    guarded = {**IDENTITY, 'params': {'seed': 0, 'frequency_penalty': 0.3}}
    assert generation_key(guarded, 'prompt') != old


def test_finish_reason_and_system_are_stored(tmp_path):
    with GenerationCache(str(tmp_path / 'c.sqlite')) as cache:
        cache.put('k', identity=IDENTITY, task='prefer', subject='u',
                  prompt='p', text='t', system='Be brief.',
                  finish_reason='length')
        entry = cache.get('k')
        assert (entry.system, entry.finish_reason) == ('Be brief.', 'length')
        cache.put('k2', identity=IDENTITY, task='prefer', subject='u',
                  prompt='p', text='t')
        assert (cache.get('k2').system, cache.get('k2').finish_reason) == (
            None, None)


def test_cache_of_an_earlier_version_gains_the_new_columns(tmp_path):
    path = tmp_path / 'old.sqlite'
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE generations (
        key TEXT PRIMARY KEY, status TEXT NOT NULL, backend TEXT NOT NULL,
        model TEXT NOT NULL, params TEXT NOT NULL, task TEXT NOT NULL,
        subject TEXT NOT NULL, prompt TEXT NOT NULL,
        image_sha256 TEXT NOT NULL, text TEXT, error TEXT,
        prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL,
        attempts INTEGER NOT NULL, updated REAL NOT NULL)""")
    key = generation_key(IDENTITY, 'p')
    conn.execute('INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '
                 '?, ?, ?, ?, ?, ?, ?)', (key, 'ok', 'fake', 'm', '{}',
                                          'prefer', 'u1', 'p', '', 'old text',
                                          None, 3, 4, 0.5, 1, 1.0))
    conn.commit()
    conn.close()
    with GenerationCache(str(path)) as cache:
        entry = cache.get(key)
        assert (entry.text, entry.completion_tokens, entry.system,
                entry.finish_reason) == ('old text', 4, None, None)
        cache.put('k2', identity=IDENTITY, task='prefer', subject='u2',
                  prompt='p2', text='new', finish_reason='stop')
        assert cache.get('k2').finish_reason == 'stop'
    # Opened again (by this or another process): nothing more to add.
    with GenerationCache(str(path)) as cache:
        assert len(cache) == 2
    columns = [row[1] for row in sqlite3.connect(path).execute(
        'PRAGMA table_info(generations)')]
    assert columns[-2:] == ['system', 'finish_reason']


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


def test_unusable_cache_files_are_refused(tmp_path):
    junk = tmp_path / 'junk.sqlite'
    junk.write_bytes(b'not a database at all' * 100)
    with pytest.raises(ValueError) as info:
        GenerationCache(str(junk))
    assert str(info.value) == (
        f'{junk}: not a readable cache (file is not a database); move it '
        'away or pass --cache NEW.sqlite')
    assert junk.read_bytes() == b'not a database at all' * 100  # untouched

    whole = tmp_path / 'whole.sqlite'
    with GenerationCache(str(whole)) as cache:
        for i in range(100):
            cache.put(f'k{i}', identity=IDENTITY, task='prefer',
                      subject=str(i), prompt='p' * 500, text='t' * 500)
    data = whole.read_bytes()
    cut = tmp_path / 'cut.sqlite'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError) as info:
        GenerationCache(str(cut))
    assert str(info.value) == (
        f'{cut}: not a readable cache (database disk image is malformed); '
        'move it away or pass --cache NEW.sqlite')

    other = tmp_path / 'other.sqlite'
    conn = sqlite3.connect(other)
    conn.execute('CREATE TABLE generations (id INTEGER, name TEXT)')
    conn.commit()
    conn.close()
    with pytest.raises(ValueError) as info:
        GenerationCache(str(other))
    assert str(info.value) == (
        f'{other}: not a generation cache (its generations table has the '
        'columns id, name); move it away or pass --cache NEW.sqlite')

    with pytest.raises(ValueError) as info:
        GenerationCache(str(tmp_path))
    assert str(info.value) == (f'{tmp_path}: is a folder, not a cache file; '
                               'pass --cache FILE.sqlite')


def test_read_only_cache_and_folders(tmp_path, monkeypatch):
    path = tmp_path / 'ro.sqlite'
    GenerationCache(str(path)).close()
    path.chmod(0o444)
    try:
        with pytest.raises(ValueError) as info:
            GenerationCache(str(path))
        assert str(info.value) == (
            f'{path}: the cache file is read-only; make it writable '
            '(chmod u+w) or pass --cache NEW.sqlite')
    finally:
        path.chmod(0o644)

    home = tmp_path / 'home'
    home.mkdir()
    home.chmod(0o555)
    monkeypatch.setenv('MLLMREC_HOME', str(home))
    try:
        with pytest.raises(ValueError) as info:
            GenerationCache()
        assert str(info.value) == (
            f'{home}: cannot create the generation cache there (read-only '
            'folder); set MLLMREC_HOME to a writable folder or pass --cache '
            'FILE.sqlite')
        with pytest.raises(ValueError) as info:
            GenerationCache(str(home / 'mine.sqlite'))
        assert str(info.value) == (
            f'{home}: cannot write the generation cache mine.sqlite there '
            '(read-only folder); pass --cache with a file in a writable '
            'folder')
        assert list(home.iterdir()) == []
    finally:
        home.chmod(0o755)
    # A home that cannot be a folder at all.
    monkeypatch.setenv('MLLMREC_HOME', str(path))
    with pytest.raises(ValueError, match=f'^{path}/llm: cannot create the '
                       r'generation cache there \(Not a directory\); set '
                       'MLLMREC_HOME to a writable folder or pass --cache'):
        GenerationCache()


def test_generations_saved_counts_stored_texts(tmp_path):
    before = generations_saved()
    with GenerationCache(str(tmp_path / 'c.sqlite')) as cache:
        cache.put('k1', identity=IDENTITY, task='prefer', subject='u1',
                  prompt='p1', text='one')
        cache.put('k2', identity=IDENTITY, task='prefer', subject='u2',
                  prompt='p2', error='HTTP 500')
        assert generations_saved() == before + 1
        cache.put('k2', identity=IDENTITY, task='prefer', subject='u2',
                  prompt='p2', text='two')
        cache.put('k1', identity=IDENTITY, task='prefer', subject='u1',
                  prompt='p1', error='late')  # ignored: k1 is finished
        assert generations_saved() == before + 2
    with GenerationCache(str(tmp_path / 'd.sqlite')) as other:
        other.put('k', identity=IDENTITY, task='describe', subject='i',
                  prompt='p', text='t')
    assert generations_saved() == before + 3  # process-wide


def test_errors_are_stored_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv('MLLMREC_OPENAI_API_KEY', 'hidden-key-42')
    with GenerationCache(str(tmp_path / 'c.sqlite')) as cache:
        cache.put('k', identity=IDENTITY, task='prefer', subject='u',
                  prompt='p', error='HTTP 401: bad hidden-key-42, '
                  'Authorization: Bearer hidden-key-42')
        assert cache.entry('k').error == ('HTTP 401: bad [REDACTED], '
                                          'Authorization: [REDACTED]')
