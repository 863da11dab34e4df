r"""A tiny in-process OpenAI-compatible server for tests of the HTTP backend.

It answers ``POST /v1/chat/completions`` from a script of behaviours
(``'ok'``, an HTTP status such as ``429`` or ``500``, ``'hang'``) consumed one
per request, then ``'ok'`` forever; ``GET /v1/models`` lists one model.  It
records every request body and header and the largest number of requests it
served at once.  The answer echoes the last message (the user's, after any
system message), with the ``finish_reason`` given, if any.  Options make it echo the request's ``Authorization`` header
in its error bodies (as some servers do) and stop listening after a number of
answers (a server that dies in the middle of a run).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Union

Behaviour = Union[str, int]


class FakeOpenAIServer:
    r"""Runs on ``127.0.0.1`` on a free port in a daemon thread.

    Args:
        script (List[str or int]): Behaviours of the first requests.
        delay (float): Seconds every ``'ok'`` answer waits (to overlap
            requests).
        hang (float): Seconds a ``'hang'`` request waits before answering.
        echo_auth (bool): Error answers (scripted statuses) echo the
            request's ``Authorization`` header and its bare token in their
            body.
        die_after (int, optional): Stop listening (new connections are
            refused) once this many completions were answered.
        finish_reason (str, optional): Sent in every choice (none is sent
            when :obj:`None`).
        reply (callable, optional): Maps the echoed content to the answer's
            text (default: :obj:`" echo {content} "`).
    """
    model = 'fake-model'

    def __init__(self, script: List[Behaviour] = (),  # type: ignore
                 delay: float = 0.0, hang: float = 2.0,
                 echo_auth: bool = False,
                 die_after: Optional[int] = None,
                 finish_reason: Optional[str] = None,
                 reply: Optional[Callable[[str], str]] = None) -> None:
        self.script = list(script)
        self.delay = delay
        self.hang = hang
        self.echo_auth = echo_auth
        self.die_after = die_after
        self.finish_reason = finish_reason
        self.reply = reply or (lambda content: f' echo {content} ')
        self.answered = 0
        self.requests: List[Dict[str, Any]] = []
        self.headers: List[Dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {'data': [{'id': server.model}]})

            def do_POST(self) -> None:
                length = int(self.headers.get('Content-Length', 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    behaviour = server.script.pop(0) if server.script else 'ok'
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight,
                                               server.in_flight)
                try:
                    if behaviour == 'hang':
                        time.sleep(server.hang)
                        behaviour = 'ok'
                    if behaviour != 'ok':
                        error: Dict[str, Any] = {'error': 'scripted'}
                        if server.echo_auth:
                            auth = self.headers.get('Authorization', '')
                            error = {'error': {
                                'message': f'invalid credentials, you sent '
                                           f'Authorization: {auth}',
                                'token': auth.split(' ')[-1],
                                'headers': dict(self.headers)}}
                        self._send(int(behaviour), error)
                        return
                    time.sleep(server.delay)
                    with server._lock:
                        server.answered += 1
                        dying = server.answered == server.die_after
                    if dying:
                        # Nothing listens any more; this answer still goes.
                        server._stop_listening()
                    content = body['messages'][-1]['content']
                    if isinstance(content, list):
                        content = 'image:' + content[-1]['text']
                    choice: Dict[str, Any] = {'message': {
                        'role': 'assistant',
                        'content': server.reply(content)}}
                    if server.finish_reason is not None:
                        choice['finish_reason'] = server.finish_reason
                    self._send(200, {
                        'choices': [choice],
                        'usage': {'prompt_tokens': 7,
                                  'completion_tokens': 3},
                    })
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self._httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={'poll_interval': 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v1'

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def _stop_listening(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __exit__(self, *args: Any) -> None:
        self._stop_listening()
