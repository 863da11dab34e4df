from mllmrec_pyg.cli import main
from mllmrec_pyg.llm.cache import GenerationCache

IDENTITY = {'backend': 'fake', 'model': 'm', 'params': {'seed': 0}}


def make(path, **texts):
    with GenerationCache(str(path)) as cache:
        for key, text in texts.items():
            cache.put(key, identity=IDENTITY, task='prefer', subject=key,
                      prompt=f'p{key}', text=text)
    return str(path)


def texts(path):
    with GenerationCache(str(path)) as cache:
        return {k: cache.get(k).text for k in 'abc' if cache.get(k)}


def test_cache_merge(tmp_path, capsys):
    one = make(tmp_path / '1.sqlite', a='A', b='B')
    two = make(tmp_path / '2.sqlite', b='B', c='C')
    out = str(tmp_path / 'out.sqlite')
    assert main(['cache', 'merge', out, one, two]) == 0
    assert capsys.readouterr().err == (
        f'merged 2 caches into {out}: 3 entries (0 there before, 3 added, 1 '
        'identical duplicates, 0 failures replaced by a generation, 0 '
        'failures not copied, 0 conflicts)\n')
    assert texts(out) == {'a': 'A', 'b': 'B', 'c': 'C'}
    # Into an existing OUT: nothing new.
    assert main(['cache', 'merge', out, two]) == 0
    assert 'into ' + out + ': 3 entries (3 there before, 0 added, 2 ' \
        'identical' in capsys.readouterr().err


def test_cache_merge_conflict_keeps_the_first_and_exits_1(tmp_path, capsys):
    one = make(tmp_path / '1.sqlite', a='first', b='B')
    two = make(tmp_path / '2.sqlite', a='second', c='C')
    out = str(tmp_path / 'out.sqlite')
    assert main(['cache', 'merge', out, one, two]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f'merged 2 caches into {out}: 3 entries (0 there before, 3 added, 0 '
        'identical duplicates, 0 failures replaced by a generation, 0 '
        'failures not copied, 1 conflicts)',
        '1 keys hold different generations in different caches; the first '
        f'entry of each was kept: a (prefer a: kept {one}, dropped {two})']
    assert texts(out) == {'a': 'first', 'b': 'B', 'c': 'C'}
    # The other order keeps the other text.
    out2 = str(tmp_path / 'out2.sqlite')
    assert main(['cache', 'merge', out2, two, one]) == 1
    assert texts(out2)['a'] == 'second'


def test_cache_merge_errors(tmp_path, capsys):
    one = make(tmp_path / '1.sqlite', a='A')
    out = make(tmp_path / 'out.sqlite', b='B')
    missing = tmp_path / 'missing.sqlite'
    assert main(['cache', 'merge', out, one, str(missing)]) == 2
    assert capsys.readouterr().err == (
        f'mllmrec cache: error: {missing}: input cache not found; check the '
        'path\n')
    corrupt = tmp_path / 'corrupt.sqlite'
    corrupt.write_bytes(b'\x00garbage' * 64)
    assert main(['cache', 'merge', out, one, str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'mllmrec cache: error: {corrupt}: not a readable '
                          'cache (file is not a database)')
    assert err.count('\n') == 1
    assert main(['cache', 'merge', out, one, out]) == 2
    assert capsys.readouterr().err == (
        f'mllmrec cache: error: {out}: the output is also an input; write the '
        'merge to another file (OUT.sqlite may be an existing cache that is '
        'not listed as an input)\n')
    assert texts(out) == {'b': 'B'}
