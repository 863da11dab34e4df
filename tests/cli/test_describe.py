import csv
import json

import pytest

from mllmrec_pyg.cli import main
from tests.llm.fake_server import FakeOpenAIServer

SPEC = 'synthetic:users=6,items=10,seed=0'


def read(out):
    with open(out / 'descriptions.tsv', newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    return rows, json.loads((out / 'summary.json').read_text())


def test_describe_image_statistics_twice(tmp_path, capsys):
    out = tmp_path / 'out'
    argv = ['describe', SPEC, '--backend', 'image-stats', '--max-items', '3',
            '--out', str(out), '--no-progress']
    assert main(argv) == 0
    assert 'NOT an MLLM' in capsys.readouterr().err
    rows, summary = read(out)
    assert rows[0] == ['item', 'description'] and len(rows) == 4
    assert all(r[1].startswith('Image statistics (not an MLLM description)')
               for r in rows[1:])
    assert {k: summary[k] for k in ('backend', 'model', 'is_llm', 'items',
                                    'calls', 'cache_hits', 'failures')} == {
        'backend': 'image-stats', 'model': 'image-statistics-v1',
        'is_llm': False, 'items': 3, 'calls': 3, 'cache_hits': 0,
        'failures': 0}
    assert main(argv) == 0
    _, again = read(out)
    assert (again['calls'], again['cache_hits']) == (0, 3)


def test_describe_over_http_with_domain(tmp_path):
    pytest.importorskip('httpx')
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        assert main(['describe', SPEC, '--backend', 'openai', '--base-url',
                     server.base_url, '--max-items', '2', '--out', str(out),
                     '--no-progress']) == 0
        content = server.requests[0]['messages'][0]['content']
    assert content[0]['image_url']['url'].startswith('data:image/png;base64,')
    assert 'relevant to the Home and Fashion,' in content[1]['text']
    rows, summary = read(out)
    assert summary['is_llm'] is True and summary['calls'] == 2
    assert rows[1][1].startswith('echo image:Please convert the given image')


def test_describe_refuses_text_models(tmp_path, capsys):
    assert main(['describe', SPEC, '--backend', 'smollm2', '--out',
                 str(tmp_path)]) == 2
    assert 'cannot read images' in capsys.readouterr().err


def test_describe_shards_merged_make_the_single_run(tmp_path, capsys):
    def describe(*extra):
        return main(['describe', SPEC, '--backend', 'image-stats',
                     '--no-progress', *extra])

    assert describe('--cache', str(tmp_path / 'single.sqlite'), '--out',
                    str(tmp_path / 'single')) == 0
    for i in (1, 2):
        assert describe('--shard', f'{i}/2', '--cache',
                        str(tmp_path / f'{i}.sqlite'), '--out',
                        str(tmp_path / f'shard{i}')) == 0
    assert '[shard 2/2: 5 of 10 items]' in capsys.readouterr().err
    # sha256('0'..'9') mod 2 = 0, 1, 0, 1, 0, 1, 1, 0, 1, 0.
    (one, first), (two, second) = [read(tmp_path / f'shard{i}')
                                   for i in (1, 2)]
    assert [r[0] for r in one[1:]] == ['0', '2', '4', '7', '9']
    assert [r[0] for r in two[1:]] == ['1', '3', '5', '6', '8']
    assert (first['shard'], first['shard_selection'], first['calls']) == (
        '1/2', {'items': 5, 'of': 10}, 5)
    merged = str(tmp_path / 'merged.sqlite')
    assert main(['cache', 'merge', merged, str(tmp_path / '1.sqlite'),
                 str(tmp_path / '2.sqlite')]) == 0
    assert describe('--cache', merged, '--out', str(tmp_path / 'all')) == 0
    _, summary = read(tmp_path / 'all')
    assert (summary['calls'], summary['cache_hits']) == (0, 10)
    assert (tmp_path / 'all' / 'descriptions.tsv').read_bytes() == \
        (tmp_path / 'single' / 'descriptions.tsv').read_bytes()


def test_describe_shard_errors(tmp_path, capsys):
    assert main(['describe', SPEC, '--out', str(tmp_path), '--cache',
                 str(tmp_path / 'c.sqlite'), '--shard', '3/2']) == 2
    assert capsys.readouterr().err.startswith(
        "mllmrec describe: error: --shard '3/2': expected I/N with 1 <= I <= N")
