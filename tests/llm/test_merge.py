import os
import sqlite3

import pytest

from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.merge import MergeConflict, merge_caches

IDENTITY = {'backend': 'fake', 'model': 'm', 'params': {'seed': 0}}


def make(path, **entries):
    # key=text, or key=None for a failure.
    with GenerationCache(str(path)) as cache:
        for key, text in entries.items():
            if text is None:
                cache.put(key, identity=IDENTITY, task='prefer', subject=key,
                          prompt=f'p{key}', error='boom')
            else:
                cache.put(key, identity=IDENTITY, task='prefer', subject=key,
                          prompt=f'p{key}', text=text, finish_reason='stop')
    return str(path)


def rows(path):
    with GenerationCache(str(path)) as cache:
        keys = sorted(e.key for e in cache.failures()) + ['a', 'b', 'c', 'd']
        return {k: (e.status, e.text) for k in keys
                if (e := cache.entry(k)) is not None}


def test_merge_unions_disjoint_caches(tmp_path):
    one = make(tmp_path / '1.sqlite', a='A', b='B')
    two = make(tmp_path / '2.sqlite', c='C')
    out = str(tmp_path / 'sub' / 'out.sqlite')
    report = merge_caches(out, [one, two])
    assert (report.existing, report.added, report.identical, report.rows,
            report.conflicts) == (0, 3, 0, 3, [])
    assert rows(out) == {'a': ('ok', 'A'), 'b': ('ok', 'B'), 'c': ('ok', 'C')}
    with GenerationCache(out) as cache:
        entry = cache.get('a')
        assert (entry.prompt, entry.finish_reason, entry.task) == (
            'pa', 'stop', 'prefer')
    # No temporary file is left beside it.
    assert sorted(os.listdir(tmp_path / 'sub')) == ['out.sqlite']
    assert report.lines() == [
        f'merged 2 caches into {out}: 3 entries (0 there before, 3 added, '
        '0 identical duplicates, 0 failures replaced by a generation, 0 '
        'failures not copied, 0 conflicts)']


def test_merge_keeps_the_first_of_a_conflict_and_never_a_failure(tmp_path):
    out = make(tmp_path / 'out.sqlite', a='A', d=None)
    one = make(tmp_path / '1.sqlite', a='A', b='B1', c=None, d='D')
    two = make(tmp_path / '2.sqlite', a='A2', b='B2', c='C', d=None)
    report = merge_caches(out, [one, two])
    assert rows(out) == {'a': ('ok', 'A'), 'b': ('ok', 'B1'),
                         'c': ('ok', 'C'), 'd': ('ok', 'D')}
    assert (report.existing, report.added, report.identical,
            report.replaced_failures, report.failures_ignored,
            report.rows) == (2, 2, 1, 2, 1, 4)
    assert report.conflicts == [
        MergeConflict('a', 'prefer', 'a', out, two),
        MergeConflict('b', 'prefer', 'b', one, two)]
    lines = report.lines(max_keys=1)
    assert lines[1] == (f'2 keys hold different generations in different '
                        f'caches; the first entry of each was kept: a (prefer '
                        f'a: kept {out}, dropped {two}) and 1 more')


def test_merge_refuses_bad_inputs_and_leaves_out_alone(tmp_path):
    one = make(tmp_path / '1.sqlite', a='A')
    out = make(tmp_path / 'out.sqlite', b='B')
    with pytest.raises(ValueError, match='the output is also an input'):
        merge_caches(out, [one, out])
    with pytest.raises(FileNotFoundError,
                       match=f'{tmp_path}/nope.sqlite: input cache not found'):
        merge_caches(out, [one, str(tmp_path / 'nope.sqlite')])
    junk = tmp_path / 'junk.sqlite'
    junk.write_bytes(b'not a database at all' * 100)
    with pytest.raises(ValueError, match=f'{junk}: not a readable cache'):
        merge_caches(out, [one, str(junk)])
    other = tmp_path / 'other.sqlite'
    conn = sqlite3.connect(other)
    conn.execute('CREATE TABLE t (x)')
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match=f'{other}: not a generation cache '
                       r'\(no generations table\)'):
        merge_caches(out, [one, str(other)])
    with pytest.raises(ValueError, match='give at least one input cache'):
        merge_caches(out, [])
    assert rows(out) == {'b': ('ok', 'B')}
    # A new OUT is not created by a refused merge.
    new = tmp_path / 'new.sqlite'
    with pytest.raises(ValueError):
        merge_caches(str(new), [one, str(junk)])
    assert not new.exists()
    assert sorted(os.listdir(tmp_path)) == [
        '1.sqlite', 'junk.sqlite', 'other.sqlite', 'out.sqlite']


def test_merge_rolls_back_when_an_input_breaks_midway(tmp_path, monkeypatch):
    import mllmrec_pyg.llm.merge as merge

    one = make(tmp_path / '1.sqlite', a='A')
    two = make(tmp_path / '2.sqlite', c='C')
    out = make(tmp_path / 'out.sqlite', b='B')
    real = merge._merge_into

    def interrupted(conn, report, inputs, label):
        real(conn, report, inputs[:1], label)
        raise KeyboardInterrupt

    monkeypatch.setattr(merge, '_merge_into', interrupted)
    with pytest.raises(KeyboardInterrupt):
        merge_caches(out, [one, two])
    assert rows(out) == {'b': ('ok', 'B')}
    new = tmp_path / 'new.sqlite'
    with pytest.raises(KeyboardInterrupt):
        merge_caches(str(new), [one, two])
    assert sorted(os.listdir(tmp_path)) == ['1.sqlite', '2.sqlite',
                                            'out.sqlite']


def test_merge_reads_a_cache_of_an_earlier_version(tmp_path):
    from mllmrec_pyg.llm.cache import _COLUMNS_BEFORE_FINISH_REASON

    path = tmp_path / 'old.sqlite'
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE generations "
                 f"({', '.join(_COLUMNS_BEFORE_FINISH_REASON)})")
    conn.execute('INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '
                 '?, ?, ?, ?, ?, ?, ?)', ('a', 'ok', 'fake', 'm', '{}',
                                          'prefer', '0', 'p', '', 'A', None,
                                          1, 2, 0.5, 1, 0.0))
    conn.commit()
    conn.close()
    out = str(tmp_path / 'out.sqlite')
    assert merge_caches(out, [str(path)]).added == 1
    with GenerationCache(out) as cache:
        entry = cache.get('a')
    assert (entry.text, entry.completion_tokens, entry.finish_reason) == (
        'A', 2, None)


def test_merge_reads_a_read_only_input(tmp_path):
    folder = tmp_path / 'ro'
    folder.mkdir()
    one = make(folder / '1.sqlite', a='A')
    os.chmod(one, 0o444)
    os.chmod(folder, 0o555)
    try:
        out = str(tmp_path / 'out.sqlite')
        # Opened with mode=ro (the mode bits say read-only, even for root).
        assert merge_caches(out, [one]).added == 1
    finally:
        os.chmod(folder, 0o755)
    assert rows(out) == {'a': ('ok', 'A')}
