r"""Faults of the LLM stage (``mllmrec describe`` / ``mllmrec prefer``), one
test per fault: the exact message (naming the URL, file or option), the exit
code of :func:`mllmrec_pyg.cli.main` (2 for a user's error) and that nothing
finished is lost (a rerun calls only the unfinished work)."""
import json
import pathlib
import socket
import sqlite3
import time

import pytest

from mllmrec_pyg.cli import main
from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.llm.backends.base import (
    Generation,
    GenerationBackend,
    GenerationRequest,
)
from mllmrec_pyg.llm.cache import GenerationCache, generations_saved
from mllmrec_pyg.llm.runner import run_requests
from tests.llm.fake_server import FakeOpenAIServer
from tests.llm.image_server import ImageServer, png_bytes

pytest.importorskip('httpx')

SPEC = 'synthetic:users=6,items=10,seed=0'


def prefer_argv(url, out, cache, *extra):
    return ['prefer', SPEC, '--backend', 'openai', '--base-url', url,
            '--out', str(out), '--no-progress', '--cache', str(cache),
            *extra]


def summary(out):
    return json.loads((pathlib.Path(out) / 'summary.json').read_text())


def free_port_url():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}/v1'


# 1. A server echoing the API key in its error body ----------------------

def test_api_key_echoed_by_the_server_is_never_kept(tmp_path, monkeypatch,
                                                    capsys):
    key = 'private-key-0123456789'
    monkeypatch.setenv('MLLMREC_OPENAI_API_KEY', key)
    cache = tmp_path / 'cache' / 'c.sqlite'
    out = tmp_path / 'out'
    with FakeOpenAIServer(script=[401, 401], echo_auth=True) as server:
        assert main(prefer_argv(server.base_url, out, cache)) == 1
        assert server.headers[0]['Authorization'] == f'Bearer {key}'
        first = summary(out)
        assert first['failures'] == 2 and first['calls'] == 6
        for error in first['failed_users'].values():
            assert error.startswith(f'BackendError: {server.base_url}/chat/'
                                    'completions answered HTTP 401: ')
            assert 'Authorization: [REDACTED]' in error
        printed = capsys.readouterr()
        conn = sqlite3.connect(cache)
        errors = [row[0] for row in conn.execute(
            "SELECT error FROM generations WHERE status = 'failed'")]
        conn.close()
        assert len(errors) == 2
        # The key is nowhere: summary, cache (every file of it), output.
        assert key not in (out / 'summary.json').read_text()
        assert not any(key in error for error in errors)
        for path in cache.parent.iterdir():
            assert key.encode() not in path.read_bytes(), path
        assert key not in printed.out and key not in printed.err

        # Nothing lost: the rerun calls the two failed users only.
        assert main(prefer_argv(server.base_url, out, cache)) == 0
        again = summary(out)
        assert (again['calls'], again['cache_hits'], again['failures']) == \
            (2, 4, 0)
        assert len(server.requests) == 8


# 2. No server at the URL ------------------------------------------------

def test_dead_server_fails_fast_with_the_url(tmp_path, capsys):
    cache = tmp_path / 'c.sqlite'
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:  # 3 users finished before
        assert main(prefer_argv(server.base_url, out, cache,
                                '--max-users', '3')) == 0
    capsys.readouterr()
    url = free_port_url()
    line = (f'mllmrec prefer: error: no server at {url} (connection '
            'refused): start it or fix --base-url\n')
    for model in (['--model', 'fake-model'], []):  # sent / looked up
        started = time.monotonic()
        assert main(prefer_argv(url, tmp_path / 'dead', cache, *model)) == 2
        assert time.monotonic() - started < 20
        assert capsys.readouterr().err == line
    with FakeOpenAIServer() as server:
        assert main(prefer_argv(server.base_url, out, cache)) == 0
        assert (summary(out)['calls'], summary(out)['cache_hits']) == (3, 3)
        assert len(server.requests) == 3


# 3. Slow, huge and bomb images --------------------------------------------

INTERACTIONS = [
    (0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
    (1, 2, 0), (1, 3, 0), (1, 4, 1), (1, 5, 2),
    (2, 4, 0), (2, 5, 0), (2, 0, 1), (2, 1, 2),
    (3, 0, 0), (3, 4, 0), (3, 1, 1), (3, 2, 2),
]


def image_dataset(folder, images):
    folder.mkdir()
    rows = ['itemID\ttitle\timage']
    rows += [f'{i}\titem {i}\t{image}' for i, image in enumerate(images)]
    (folder / 'web.items.tsv').write_text('\n'.join(rows) + '\n')
    lines = ['userID\titemID\tx_label\ttimestamp']
    lines += [f'{u}\t{i}\t{s}\t{1_600_000_000 + 100 * n}'
              for n, (u, i, s) in enumerate(INTERACTIONS)]
    (folder / 'web.inter').write_text('\n'.join(lines) + '\n')
    (folder / 'dataset.json').write_text(json.dumps(
        {'name': 'web', 'domain': 'Baby'}))
    return folder


def test_refused_images_are_named_skips_not_crashes(tmp_path):
    (tmp_path / 'local.png').write_bytes(png_bytes(12))
    with ImageServer(trickle_interval=0.05) as images, \
            FakeOpenAIServer() as server:
        names = ['ok.png', 'trickle.png', 'huge.png', 'bomb.png',
                 'endless.png']
        folder = image_dataset(tmp_path / 'web', [images.url(n) for n in names]
                               + [str(tmp_path / 'local.png')])
        out = tmp_path / 'out'
        argv = ['describe', str(folder), '--backend', 'openai', '--base-url',
                server.base_url, '--out', str(out), '--no-progress',
                '--cache', str(tmp_path / 'c.sqlite'), '--image-timeout',
                '0.5', '--max-image-mb', '1']
        started = time.monotonic()
        assert main(argv) == 0
        assert time.monotonic() - started < 60
        first = summary(out)
        assert (first['descriptions'], first['calls'], first['failures'],
                first['skipped']) == (2, 2, 0, 4)
        assert first['skipped_items'] == {
            '1': f"image URL {images.url('trickle.png')} took longer than "
                 '0.5 s to download (--image-timeout)',
            '2': f"image {images.url('huge.png')} is 50 MB, over the "
                 '--max-image-mb cap of 1 MB',
            '3': f"image {images.url('bomb.png')} is 12000x12000 pixels, "
                 'over the decoding limit of 89478485 pixels '
                 '(PIL.Image.MAX_IMAGE_PIXELS)',
            '4': f"image {images.url('endless.png')} is more than 1 MB, "
                 'over the --max-image-mb cap of 1 MB',
        }
        # Nothing lost: the rerun reads both descriptions from the cache.
        assert main(argv) == 0
        again = summary(out)
        assert (again['calls'], again['cache_hits'], again['skipped']) == \
            (0, 2, 4)
        assert len(server.requests) == 2


# 4. Unusable caches ---------------------------------------------------------

def test_unusable_cache_is_refused_before_any_generation(tmp_path, capsys):
    junk = tmp_path / 'junk.sqlite'
    junk.write_bytes(b'\x00garbage' * 64)
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        assert main(prefer_argv(server.base_url, out, junk)) == 2
        assert capsys.readouterr().err == (
            f'mllmrec prefer: error: {junk}: not a readable cache (file is '
            'not a database); move it away or pass --cache NEW.sqlite\n')
        assert junk.read_bytes() == b'\x00garbage' * 64
        ro = tmp_path / 'ro.sqlite'
        GenerationCache(str(ro)).close()
        ro.chmod(0o444)
        try:
            assert main(prefer_argv(server.base_url, out, ro)) == 2
        finally:
            ro.chmod(0o644)
        assert capsys.readouterr().err == (
            f'mllmrec prefer: error: {ro}: the cache file is read-only; make '
            'it writable (chmod u+w) or pass --cache NEW.sqlite\n')
        assert server.requests == [] and not out.exists()
        # The fix the message names works.
        fresh = tmp_path / 'NEW.sqlite'
        assert main(prefer_argv(server.base_url, out, fresh)) == 0


def test_read_only_home_names_the_folder(tmp_path, monkeypatch, capsys):
    home = tmp_path / 'home'
    monkeypatch.setenv('MLLMREC_HOME', str(home))
    load_dataset(SPEC)  # processed while the home is writable
    (home / 'llm').mkdir()
    (home / 'llm').chmod(0o555)
    try:
        with FakeOpenAIServer() as server:
            assert main(['prefer', SPEC, '--backend', 'openai', '--base-url',
                         server.base_url, '--out', str(tmp_path / 'out'),
                         '--no-progress']) == 2
            assert server.requests == []
    finally:
        (home / 'llm').chmod(0o755)
    assert capsys.readouterr().err == (
        f'mllmrec prefer: error: {home}/llm: cannot create the generation '
        'cache there (read-only folder); set MLLMREC_HOME to a writable '
        'folder or pass --cache FILE.sqlite\n')


# 5. Interrupts: how much is saved ---------------------------------------

class InterruptedBackend(GenerationBackend):
    name = 'interrupted'

    def __init__(self, answers):
        super().__init__()
        self.model = 'm'
        self.answers = answers
        self.prompts = []

    def generate_many(self, requests, on_result):
        for index, request in enumerate(requests):
            if len(self.prompts) == self.answers:
                raise KeyboardInterrupt
            self.prompts.append(request.prompt)
            on_result(index, Generation(f'done {request.prompt}'))


def test_generations_saved_counts_what_an_interrupt_keeps(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    jobs = [(str(i), GenerationRequest(f'p{i}')) for i in range(5)]
    before = generations_saved()
    with pytest.raises(KeyboardInterrupt):
        run_requests(InterruptedBackend(answers=2), cache, 'prefer', jobs,
                     progress=False)
    assert generations_saved() == before + 2
    rerun = InterruptedBackend(answers=10)
    result = run_requests(rerun, cache, 'prefer', jobs, progress=False)
    assert (result.calls, result.cache_hits) == (3, 2)
    assert rerun.prompts == ['p2', 'p3', 'p4']
    assert generations_saved() == before + 5
    # Cache hits are no new generations.
    run_requests(rerun, cache, 'prefer', jobs, progress=False)
    assert generations_saved() == before + 5
    cache.close()


# 6. Non-positive numbers are refused at parse time ------------------------

@pytest.mark.parametrize('command,option,value,message', [
    ('prefer', '--timeout', '0', "must be a number > 0 (got '0')"),
    ('prefer', '--timeout', 'nan', "must be a number > 0 (got 'nan')"),
    ('prefer', '--max-new-tokens', '0', "must be an integer >= 1 (got '0')"),
    ('prefer', '--concurrency', '0', "must be an integer >= 1 (got '0')"),
    ('prefer', '--batch-size', '-1', "must be an integer >= 1 (got '-1')"),
    ('prefer', '--threads', '0', "must be an integer >= 1 (got '0')"),
    ('prefer', '--max-items', '0', "must be an integer >= 1 (got '0')"),
    ('describe', '--image-timeout', '0', "must be a number > 0 (got '0')"),
    ('describe', '--max-image-mb', '-2', "must be a number > 0 (got '-2')"),
    ('describe', '--max-new-tokens', 'x', "must be an integer >= 1 (got 'x')"),
])
def test_non_positive_numbers_are_parse_errors(tmp_path, capsys, command,
                                               option, value, message):
    with pytest.raises(SystemExit) as info:
        main([command, SPEC, '--out', str(tmp_path / 'out'), option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f'mllmrec {command}: error: argument {option}: '
                        f'{message}\n')
    assert not (tmp_path / 'out').exists()
