import base64
import socket

import pytest

from mllmrec_pyg.llm.backends import (
    BackendError,
    Generation,
    GenerationRequest,
    OpenAIHTTPBackend,
)
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
        assert b.identity() == {
            'backend': 'openai', 'model': 'fake-model',
            'params': {'max_tokens': 160, 'temperature': 0.0, 'seed': 0}}
        assert str(b) == (f"OpenAIHTTPBackend(base_url='{server.base_url}', "
                          "model='fake-model', max_concurrency=4)")


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


def test_connection_error_fails_without_stopping_others():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    b = OpenAIHTTPBackend(base_url=f'http://127.0.0.1:{port}/v1', model='m',
                          max_retries=1, backoff=0.01, timeout=2.0)
    outcomes = collect(b, [GenerationRequest('a'), GenerationRequest('b')])
    assert sorted(outcomes) == [0, 1]
    for outcome in outcomes.values():
        assert isinstance(outcome, BackendError)
        assert 'ConnectError' in str(outcome)
    unnamed = OpenAIHTTPBackend(base_url=f'http://127.0.0.1:{port}/v1',
                                timeout=2.0)
    with pytest.raises(ValueError, match='is the server up'):
        unnamed.resolve_model()


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
        b = OpenAIHTTPBackend(base_url=[up.base_url, free_port_url()], timeout=2.0)
        with pytest.raises(ValueError, match='did not answer'):
            b.check_servers()
