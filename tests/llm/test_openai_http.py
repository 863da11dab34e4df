import base64
import socket
import time

import pytest

from mllmrec_pyg.llm.backends import (
    BackendError,
    Generation,
    GenerationRequest,
    OpenAIHTTPBackend,
    ServerUnreachableError,
)
from mllmrec_pyg.llm.redact import redact_secrets
from tests.llm.fake_server import FakeOpenAIServer

pytest.importorskip('httpx')


def backend(server, **kwargs):
    options = dict(backoff=0.01, max_backoff=0.05, timeout=5.0)
    options.update(kwargs)
    return OpenAIHTTPBackend(base_url=server.base_url, **options)


def collect(b, requests):
    outcomes = {}
    b.generate_many(requests, outcomes.__setitem__)
    return outcomes


def test_completion_and_model_discovery():
    with FakeOpenAIServer() as server:
        b = backend(server, api_key='sk-secret-123')
        assert b.generate(GenerationRequest('hello')) == Generation(
            text='echo hello', prompt_tokens=7, completion_tokens=3)
        assert b.model == 'fake-model'
        body = server.requests[0]
        assert body['model'] == 'fake-model'
        assert body['messages'] == [{'role': 'user', 'content': 'hello'}]
        assert body['temperature'] == 0.0 and body['max_tokens'] == 160
        assert server.headers[0]['Authorization'] == 'Bearer sk-secret-123'
        # The key is sent, and nowhere else.
        assert 'sk-secret' not in repr(b)
        assert 'sk-secret' not in str(b.identity())
        assert (body['frequency_penalty'], body['presence_penalty'],
                body['stop']) == (0.3, 0.3, ['\n\n'])
        assert b.identity() == {
            'backend': 'openai', 'model': 'fake-model',
            'params': {'max_tokens': 160, 'temperature': 0.0, 'seed': 0,
                       'frequency_penalty': 0.3, 'presence_penalty': 0.3,
                       'stop': ['\n\n']}}
        assert str(b) == (f"OpenAIHTTPBackend(base_url='{server.base_url}', "
                          "model='fake-model', max_concurrency=4, "
                          "decoding='guarded')")


def test_decoding_presets_system_message_and_finish_reason():
    with FakeOpenAIServer(finish_reason='length') as server:
        legacy = backend(server, decoding='legacy')
        out = legacy.generate(GenerationRequest('hello', system='Be brief.'))
        assert out == Generation(text='echo hello', prompt_tokens=7,
                                 completion_tokens=3, finish_reason='length')
        # Legacy sends, and keys, exactly what earlier versions did.
        assert server.requests[0] == {
            'model': 'fake-model',
            'messages': [{'role': 'system', 'content': 'Be brief.'},
                         {'role': 'user', 'content': 'hello'}],
            'max_tokens': 160, 'temperature': 0.0, 'seed': 0,
            'stream': False}
        assert legacy.identity()['params'] == {
            'max_tokens': 160, 'temperature': 0.0, 'seed': 0}
        tuned = backend(server, decoding='legacy', presence_penalty=0.5,
                        stop=['\n1.'], extra_params={'repeat_penalty': 1.2})
        tuned.generate(GenerationRequest('hello'))
        body = server.requests[1]
        assert (body['presence_penalty'], body['stop'], body['repeat_penalty'],
                'frequency_penalty' in body) == (0.5, ['\n1.'], 1.2, False)
        assert tuned.identity()['params'] == {
            'max_tokens': 160, 'temperature': 0.0, 'seed': 0,
            'presence_penalty': 0.5, 'stop': ['\n1.'],
            'extra_params': {'repeat_penalty': 1.2}}
    with pytest.raises(ValueError, match='extra_params cannot set model, '
                       'stop: use the backend argument'):
        OpenAIHTTPBackend(base_url='http://x/v1',
                          extra_params={'stop': [], 'model': 'm'})
    with pytest.raises(ValueError, match='At most 4 stop sequences'):
        OpenAIHTTPBackend(base_url='http://x/v1', stop=list('abcde'))
    with pytest.raises(ValueError, match="Unknown decoding 'off'"):
        OpenAIHTTPBackend(base_url='http://x/v1', decoding='off')


def test_image_is_sent_as_data_url():
    png = b'\x89PNG\r\n\x1a\nrest'
    with FakeOpenAIServer() as server:
        out = backend(server).generate(GenerationRequest('describe', png))
        assert out.text == 'echo image:describe'
        content = server.requests[0]['messages'][0]['content']
        url = 'data:image/png;base64,' + base64.b64encode(png).decode()
        assert content == [{'type': 'image_url', 'image_url': {'url': url}},
                           {'type': 'text', 'text': 'describe'}]


def test_retries_429_and_5xx_then_succeeds():
    with FakeOpenAIServer(script=[429, 500, 503]) as server:
        out = backend(server, model='m').generate(GenerationRequest('x'))
        assert out.text == 'echo x'
        assert len(server.requests) == 4


def test_gives_up_after_max_retries():
    with FakeOpenAIServer(script=[500, 500, 500]) as server:
        with pytest.raises(BackendError, match='after 3 attempts; last: '
                           'HTTP 500'):
            backend(server, model='m', max_retries=2).generate(
                GenerationRequest('x'))
        assert len(server.requests) == 3


def test_client_error_is_not_retried():
    with FakeOpenAIServer(script=[400]) as server:
        with pytest.raises(BackendError, match='answered HTTP 400'):
            backend(server, model='m').generate(GenerationRequest('x'))
        assert len(server.requests) == 1


def test_timeout_is_retried():
    with FakeOpenAIServer(script=['hang'], hang=1.0) as server:
        out = backend(server, model='m', timeout=0.3).generate(
            GenerationRequest('slow'))
        assert out.text == 'echo slow'
        assert len(server.requests) == 2


def test_dead_server_stops_the_run_in_seconds():
    url = free_port_url()
    message = (f'no server at {url} (connection refused): start it or fix '
               '--base-url')
    # The default backoff: a dead server must not cost it per request.
    b = OpenAIHTTPBackend(base_url=url, model='m', max_concurrency=2)
    outcomes = {}
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError) as info:
        b.generate_many([GenerationRequest(f'p{i}') for i in range(6)],
                        outcomes.__setitem__)
    assert time.monotonic() - started < 20
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert outcomes == {}  # nothing was finished, nothing is recorded
    unnamed = OpenAIHTTPBackend(base_url=url, timeout=2.0)
    with pytest.raises(ServerUnreachableError) as info:
        unnamed.resolve_model()
    assert str(info.value) == message
    two = free_port_url()
    both = OpenAIHTTPBackend(base_url=[url, two], model='m', backoff=0.01)
    both._servers_checked = True
    with pytest.raises(ServerUnreachableError) as info:
        both.generate(GenerationRequest('p'))
    assert str(info.value) == (f'no server at {url}, {two} (connection '
                               'refused): start them or fix --base-url')


def test_server_dying_mid_run_fails_the_rest_at_once():
    with FakeOpenAIServer(die_after=1) as server:
        b = backend(server, model='m', max_concurrency=1, max_retries=2)
        outcomes = collect(b, [GenerationRequest(f'p{i}') for i in range(4)])
        assert outcomes[0] == Generation('echo p0', 7, 3)
        # The first request after the death spends its retries ...
        assert str(outcomes[1]).startswith(
            f'{server.base_url}: failed after 3 attempts; last: '
            f'{server.base_url}/chat/completions: ConnectError: ')
        # ... the others fail at their first refusal: no waves of backoff.
        for i in (2, 3):
            assert isinstance(outcomes[i], BackendError)
            assert str(outcomes[i]).startswith(
                f'{server.base_url}: failed after 1 attempt (the server '
                'stopped accepting connections); last: ')
        assert len(server.requests) == 1


def test_api_key_never_kept_in_errors(monkeypatch):
    key = 'my-private-key-XYZ'  # not sk-shaped: found as the key itself
    monkeypatch.setenv('MLLMREC_OPENAI_API_KEY', key)
    with FakeOpenAIServer(script=[401, 500, 500], echo_auth=True) as server:
        b = backend(server, model='m', max_retries=1)
        with pytest.raises(BackendError) as info:
            b.generate(GenerationRequest('a'))
        assert server.headers[0]['Authorization'] == f'Bearer {key}'
        text = str(info.value)
        assert text.startswith(f'{server.base_url}/chat/completions answered '
                               'HTTP 401: ')
        assert key not in text and 'XYZ' not in text
        assert 'Authorization: [REDACTED]' in text
        with pytest.raises(BackendError) as info:
            b.generate(GenerationRequest('b'))  # retried, then given up
        assert 'failed after 2 attempts; last: HTTP 500' in str(info.value)
        assert key not in str(info.value) and 'XYZ' not in str(info.value)


def test_a_key_cut_by_the_message_limit_leaves_no_part():
    key = 'sk-' + 'a1b2c3d4' * 5
    b = OpenAIHTTPBackend(base_url='http://127.0.0.1:1/v1', api_key=key)

    class Answer:
        text = 'x' * 290 + key + ' tail'

    kept = b._answer_text(Answer())
    assert kept == 'x' * 290 + '[REDACTED]'
    assert 'a1b2' not in kept


def test_redact_secrets(monkeypatch):
    monkeypatch.delenv('MLLMREC_OPENAI_API_KEY', raising=False)
    monkeypatch.setenv('OPENAI_API_KEY', 'env-key-123')
    assert redact_secrets('bad key env-key-123') == 'bad key [REDACTED]'
    assert redact_secrets('"Authorization": "Bearer abc.def"') == \
        '"Authorization": "[REDACTED]"'
    assert redact_secrets('authorization=Basic dXNlcjpwYXNz; ok') == \
        'authorization=[REDACTED]; ok'
    assert redact_secrets('got bearer tok_42, expected another') == \
        'got bearer [REDACTED], expected another'
    assert redact_secrets('key sk-proj-ABCDEFGH123 is revoked') == \
        'key [REDACTED] is revoked'
    assert redact_secrets('{"api_key": "s3cr3t"}') == '{"api_key": "[REDACTED]"}'
    assert redact_secrets('GET https://bob:hunter2@host/v1 failed') == \
        'GET https://[REDACTED]@host/v1 failed'
    assert redact_secrets('quote \\"k\\" and p4ss!', ['p4ss!']) == \
        'quote \\"k\\" and [REDACTED]'
    # Short "secrets" are not blanked out of ordinary words.
    assert redact_secrets('a sky', ['sky']) == 'a sky'
    assert redact_secrets('') == ''


def test_bounded_concurrency_and_per_request_results():
    with FakeOpenAIServer(delay=0.1) as server:
        b = backend(server, model='m', max_concurrency=3)
        requests = [GenerationRequest(f'p{i}') for i in range(9)]
        outcomes = collect(b, requests)
        assert {i: o.text for i, o in outcomes.items()} == {
            i: f'echo p{i}' for i in range(9)}
        assert server.max_in_flight == 3


def test_configuration_errors(monkeypatch):
    for name in ('MLLMREC_OPENAI_BASE_URL', 'OPENAI_BASE_URL'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match='--base-url'):
        OpenAIHTTPBackend()
    monkeypatch.setenv('MLLMREC_OPENAI_BASE_URL', 'http://127.0.0.1:1/v1/')
    monkeypatch.setenv('MLLMREC_OPENAI_MODEL', 'env-model')
    b = OpenAIHTTPBackend()
    assert b.base_url == 'http://127.0.0.1:1/v1' and b.model == 'env-model'


def free_port_url():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}/v1'


def test_several_servers_share_the_work():
    with FakeOpenAIServer(delay=0.05) as first, FakeOpenAIServer(delay=0.05) as second:
        b = OpenAIHTTPBackend(base_url=f'{first.base_url}, {second.base_url}/',
                              max_concurrency=2, timeout=5.0)
        assert b.base_urls == [first.base_url, second.base_url]
        assert repr(b).startswith(f"OpenAIHTTPBackend(base_url=['{first.base_url}'")
        requests = [GenerationRequest(f'p{i}') for i in range(8)]
        outcomes = collect(b, requests)
        assert {i: o.text for i, o in outcomes.items()} == {
            i: f'echo p{i}' for i in range(8)}
        # Two slots, two servers: each server has one request at a time.
        assert first.max_in_flight == second.max_in_flight == 1
        assert len(first.requests) + len(second.requests) == 8
        assert first.requests and second.requests


def test_dead_server_is_left_for_the_live_one():
    with FakeOpenAIServer() as live:
        b = OpenAIHTTPBackend(base_url=[free_port_url(), live.base_url], model='fake-model',
                              max_concurrency=1, max_retries=2, backoff=0.01,
                              timeout=2.0)
        b._servers_checked = True  # the dead server cannot list its models
        outcomes = collect(b, [GenerationRequest(f'p{i}') for i in range(4)])
        assert all(isinstance(o, Generation) for o in outcomes.values())
        # Only the first attempt went to the dead server.
        assert len(live.requests) == 4


def test_servers_must_serve_the_same_model():
    with FakeOpenAIServer() as first, FakeOpenAIServer() as second:
        second.model = 'another-model'
        b = OpenAIHTTPBackend(base_url=[first.base_url, second.base_url])
        with pytest.raises(ValueError, match='same model'):
            b.generate_many([GenerationRequest('p')], lambda i, o: None)
        assert first.requests == second.requests == []
    with pytest.raises(ValueError, match='listed twice'):
        OpenAIHTTPBackend(base_url='http://a/v1,http://a/v1/')
    with FakeOpenAIServer() as up:
        dead = free_port_url()
        b = OpenAIHTTPBackend(base_url=[up.base_url, dead], timeout=2.0)
        with pytest.raises(ServerUnreachableError) as info:
            b.check_servers()
        assert str(info.value) == (f'no server at {dead} (connection '
                                   'refused): start it or fix --base-url')
