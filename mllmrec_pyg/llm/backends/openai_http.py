r"""Any OpenAI-compatible chat-completions server (vLLM, ollama's ``/v1``,
llama.cpp's server, hosted APIs) over HTTP."""
from __future__ import annotations

import asyncio
import base64
import os
import random
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from mllmrec_pyg.llm.backends.base import (
    BackendError,
    Generation,
    GenerationBackend,
    GenerationOutcome,
    GenerationRequest,
    ResultCallback,
)
from mllmrec_pyg.llm.backends.decoding import SERVER_DECODING, preset
from mllmrec_pyg.llm.redact import API_KEY_ENV, redact_secrets

#: Environment variables read when an argument is not given (first set wins;
#: :obj:`API_KEY_ENV` is :obj:`('MLLMREC_OPENAI_API_KEY', 'OPENAI_API_KEY')`).
BASE_URL_ENV = ('MLLMREC_OPENAI_BASE_URL', 'OPENAI_BASE_URL')
MODEL_ENV = ('MLLMREC_OPENAI_MODEL', 'OPENAI_MODEL')

__all__ = ['API_KEY_ENV', 'BASE_URL_ENV', 'DEAD_SERVER_ATTEMPTS', 'MODEL_ENV',
           'OpenAIHTTPBackend', 'ServerUnreachableError', 'no_server_message']

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

#: Attempts of one request, while no server has accepted a connection in the
#: run, before the run stops with :class:`ServerUnreachableError`.
DEAD_SERVER_ATTEMPTS = 3

#: Most characters of a server's answer kept in an error message.
_BODY_CHARS = 300

#: Request fields the backend sets itself: not overridable by
#: :obj:`extra_params`.
_OWN_FIELDS = frozenset({'model', 'messages', 'stream', 'max_tokens',
                         'temperature', 'seed', 'frequency_penalty',
                         'presence_penalty', 'stop'})


class ServerUnreachableError(ValueError):
    r"""No server of the run accepts connections (nothing listens at the
    URL): the run stops after a few quick attempts instead of retrying every
    request; what finished before stays in the cache."""


def _refusal(exc: BaseException) -> str:
    text = str(exc)
    if 'refused' in text.lower() or \
            'all connection attempts failed' in text.lower():
        return 'connection refused'
    return f'cannot connect: {type(exc).__name__}: {text}'


def no_server_message(urls: Sequence[str], exc: BaseException) -> str:
    r"""Returns the one-line error for servers that accept no connection,
    e.g. :obj:`"no server at http://127.0.0.1:8080/v1 (connection refused):
    start it or fix --base-url"`.

    Args:
        urls (Sequence[str]): The servers' API roots.
        exc (BaseException): The connection error of the last attempt.
    """
    them = 'it' if len(urls) == 1 else 'them'
    return (f"no server at {', '.join(urls)} ({_refusal(exc)}): start {them} "
            'or fix --base-url')


def _from_env(names: Sequence[str]) -> Optional[str]:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _image_mime(image: bytes) -> str:
    if image.startswith(b'\x89PNG'):
        return 'image/png'
    if image.startswith(b'\xff\xd8'):
        return 'image/jpeg'
    if image[:6] in (b'GIF87a', b'GIF89a'):
        return 'image/gif'
    if image[:4] == b'RIFF' and image[8:12] == b'WEBP':
        return 'image/webp'
    return 'application/octet-stream'


class OpenAIHTTPBackend(GenerationBackend):
    r"""Completions from an OpenAI-compatible :obj:`/v1/chat/completions`
    endpoint, with images sent as base64 data URLs.

    Requests run concurrently on one event loop, at most
    :obj:`max_concurrency` at a time; each has a timeout and is retried with
    exponential backoff (and jitter, honouring ``Retry-After``) on HTTP 408,
    409, 425, 429 and 5xx answers, on timeouts and on connection errors.
    Other 4xx answers fail at once (a retry would get the same answer).

    A dead server costs seconds, not the backoff schedule of every request:
    while no server has accepted a connection in the run, a request refused
    :obj:`DEAD_SERVER_ATTEMPTS` times by every server stops the whole run
    with :class:`ServerUnreachableError` (a :class:`ValueError`: :obj:`"no
    server at URL (connection refused): start it or fix --base-url"`).  A
    server that dies in the middle of a run turns the remaining requests
    into recorded failures (retried by the next run): once one request has
    spent its retries on refusing servers, the others fail at their first
    refused attempt.

    Every server message kept in an error (and so in the cache and
    :obj:`summary.json`) is passed through
    :func:`~mllmrec_pyg.llm.redact.redact_secrets` first: a server echoing
    the ``Authorization`` header never gets the API key written or printed.

    Several servers of the same model (e.g. one llama.cpp server per CPU
    core, or one vLLM instance per GPU) share the work: every attempt goes to
    the server with the fewest requests in flight, among those whose last
    attempt did not fail to connect or time out (so retries leave a dead
    server for the others, and come back to it once it answers). They must
    serve the same model: each is asked for its :obj:`GET /models` before the
    first request, and one that does not list the model is an error (its
    completions would be cached under the other's name).

    Repetition control comes from the :obj:`decoding` preset
    (:mod:`~mllmrec_pyg.llm.backends.decoding`): by default
    (:obj:`"guarded"`) :obj:`frequency_penalty` and :obj:`presence_penalty`
    of 0.3 and a stop at the first blank line; :obj:`"legacy"` sends none of
    them, as earlier versions did.  A request's system message is sent as a
    :obj:`"system"` message before the user's.

    Args:
        base_url (str or List[str], optional): The API root, e.g.
            :obj:`"http://127.0.0.1:8080/v1"`, or several (a list or a
            comma-separated string). (default:
            :obj:`$MLLMREC_OPENAI_BASE_URL`, else :obj:`$OPENAI_BASE_URL`)
        model (str, optional): The served model's name; when neither given
            nor set in :obj:`$MLLMREC_OPENAI_MODEL` / :obj:`$OPENAI_MODEL`,
            the first model of :obj:`GET /models` is used.
            (default: :obj:`None`)
        api_key (str, optional): Sent as a bearer token; never logged,
            repr'd, cached or written. (default:
            :obj:`$MLLMREC_OPENAI_API_KEY`, else :obj:`$OPENAI_API_KEY`)
        max_tokens (int, optional): Most tokens to generate.
            (default: :obj:`160`)
        temperature (float, optional): Sampling temperature; :obj:`0` is
            greedy. (default: :obj:`0.0`)
        seed (int, optional): Sent as :obj:`seed` for servers that honour
            it. (default: :obj:`0`)
        max_concurrency (int, optional): Requests in flight at once.
            (default: :obj:`4`)
        timeout (float, optional): Seconds one attempt may take.
            (default: :obj:`120.0`)
        max_retries (int, optional): Retries after the first attempt.
            (default: :obj:`5`)
        backoff (float, optional): First retry delay in seconds; doubled
            each retry. (default: :obj:`1.0`)
        max_backoff (float, optional): Largest retry delay in seconds.
            (default: :obj:`30.0`)
        decoding (str, optional): The preset of the three settings below,
            :obj:`"guarded"` or :obj:`"legacy"`. (default: :obj:`"guarded"`)
        frequency_penalty (float, optional): Lowers a token's logit by this
            much per earlier occurrence in the output (OpenAI's range:
            -2 to 2). (default: the preset's, :obj:`0.3` / not sent)
        presence_penalty (float, optional): Lowers a token's logit by this
            much once it occurred in the output. (default: the preset's,
            :obj:`0.3` / not sent)
        stop (Sequence[str], optional): Up to 4 stop sequences; the server
            leaves them out of the text. (default: the preset's,
            :obj:`("\n\n",)` / not sent)
        extra_params (Mapping[str, Any], optional): Further request fields
            for a particular server, e.g. :obj:`{"repeat_penalty": 1.2}`
            for llama.cpp or :obj:`{"repetition_penalty": 1.2}` for vLLM
            (part of the cache key). (default: :obj:`None`)
    """
    name = 'openai'
    supports_images = True

    def __init__(self, base_url: Union[str, Sequence[str], None] = None,
                 model: Optional[str] = None, api_key: Optional[str] = None,
                 max_tokens: int = 160, temperature: float = 0.0,
                 seed: int = 0, max_concurrency: int = 4,
                 timeout: float = 120.0, max_retries: int = 5,
                 backoff: float = 1.0, max_backoff: float = 30.0,
                 decoding: str = 'guarded',
                 frequency_penalty: Optional[float] = None,
                 presence_penalty: Optional[float] = None,
                 stop: Optional[Sequence[str]] = None,
                 extra_params: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        settings = preset(SERVER_DECODING, decoding,
                          frequency_penalty=frequency_penalty,
                          presence_penalty=presence_penalty, stop=stop)
        if len(settings['stop']) > 4:
            raise ValueError(f"At most 4 stop sequences (OpenAI's limit; got "
                             f"{len(settings['stop'])})")
        own = sorted(_OWN_FIELDS & set(extra_params or {}))
        if own:
            raise ValueError(f'extra_params cannot set {", ".join(own)}: use '
                             'the backend argument (or command-line option) '
                             'of that name')
        base_url = base_url or _from_env(BASE_URL_ENV)
        if isinstance(base_url, str):
            base_url = base_url.split(',')
        urls = [url.strip().rstrip('/') for url in base_url or () if url.strip()]
        if not urls:
            raise ValueError(
                'No server for the OpenAI-compatible backend: pass --base-url '
                '(e.g. http://127.0.0.1:8080/v1) or set '
                f'{BASE_URL_ENV[0]}')
        if max_concurrency < 1:
            raise ValueError(f'max_concurrency must be >= 1 (got '
                             f'{max_concurrency})')
        if len(set(urls)) != len(urls):
            raise ValueError(f'A server is listed twice in {urls}')
        #: The servers; :attr:`base_url` is the first.
        self.base_urls: List[str] = urls
        self.base_url = urls[0]
        self._servers_checked = len(urls) == 1
        self._in_flight = [0] * len(urls)
        self._unreachable = [False] * len(urls)
        # Per run: whose last attempt was refused, whether any server
        # accepted a connection, whether a request spent its retries on
        # refusing servers.
        self._refused = [False] * len(urls)
        self._connected = False
        self._down = False
        self._api_key = api_key or _from_env(API_KEY_ENV)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.model = model or _from_env(MODEL_ENV) or ''
        self.decoding = decoding
        self.frequency_penalty: Optional[float] = settings['frequency_penalty']
        self.presence_penalty: Optional[float] = settings['presence_penalty']
        self.stop: Tuple[str, ...] = settings['stop']
        self.extra_params: Dict[str, Any] = dict(extra_params or {})

    def _decoding_fields(self) -> Dict[str, Any]:
        # Only what is set: the legacy preset sends (and keys) exactly what
        # earlier versions did.
        fields: Dict[str, Any] = {}
        if self.frequency_penalty is not None:
            fields['frequency_penalty'] = self.frequency_penalty
        if self.presence_penalty is not None:
            fields['presence_penalty'] = self.presence_penalty
        if self.stop:
            fields['stop'] = list(self.stop)
        return fields

    @property
    def generation_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {'max_tokens': self.max_tokens,
                                  'temperature': self.temperature,
                                  'seed': self.seed,
                                  **self._decoding_fields()}
        if self.extra_params:
            params['extra_params'] = dict(sorted(self.extra_params.items()))
        return params

    def _redact(self, text: str) -> str:
        r"""Returns :obj:`text` without the API key or anything that looks
        like a credential (:func:`~mllmrec_pyg.llm.redact.redact_secrets`):
        every server message goes through it before it is stored or
        printed."""
        return redact_secrets(text, [self._api_key] if self._api_key else ())

    def _answer_text(self, response: Any) -> str:
        # Redacted whole, then cut: no part of a key survives the cut.
        return self._redact(response.text)[:_BODY_CHARS]

    def _headers(self) -> Dict[str, str]:
        headers = {'Content-Type': 'application/json'}
        if self._api_key:
            headers['Authorization'] = f'Bearer {self._api_key}'
        return headers

    def resolve_model(self) -> str:
        r"""Returns :attr:`model`, asking the server's :obj:`GET /models`
        for its first model when none was configured.

        Raises:
            ValueError: If no model is configured and the server lists
                none (or cannot be reached).
        """
        if not self.model:
            import httpx

            try:
                models = self._list_models(self.base_url)
            except httpx.ConnectError as exc:
                raise ServerUnreachableError(
                    no_server_message([self.base_url], exc)) from None
            except (httpx.HTTPError, ValueError) as exc:
                raise ValueError(self._redact(
                    f'No --model given and {self.base_url}/models did not '
                    f'answer ({type(exc).__name__}: {exc}): is the server '
                    'up? Pass --model to skip the lookup')) from None
            if not models:
                raise ValueError(f'No --model given and {self.base_url}'
                                 '/models lists no model')
            self.model = models[0]
        return self.model

    def _list_models(self, base_url: str) -> List[str]:
        import httpx

        response = httpx.get(f'{base_url}/models', headers=self._headers(),
                             timeout=self.timeout)
        response.raise_for_status()
        return [str(m.get('id')) for m in response.json().get('data') or []]

    def check_servers(self) -> None:
        r"""With several servers, checks that each one lists the model.

        Raises:
            ValueError: If a server does not answer :obj:`GET /models` or
                does not list :attr:`model`.
        """
        if self._servers_checked:
            return
        import httpx

        model = self.resolve_model()
        for url in self.base_urls:
            try:
                models = self._list_models(url)
            except httpx.ConnectError as exc:
                raise ServerUnreachableError(
                    no_server_message([url], exc)) from None
            except (httpx.HTTPError, ValueError) as exc:
                raise ValueError(self._redact(
                    f'{url}/models did not answer '
                    f'({type(exc).__name__}: {exc})')) from None
            if model not in models:
                raise ValueError(
                    f"{url} does not serve '{model}' (it lists {models}): "
                    'every server must serve the same model')
        self._servers_checked = True

    def identity(self) -> Dict[str, Any]:
        self.resolve_model()
        return super().identity()

    def _payload(self, request: GenerationRequest) -> Dict[str, Any]:
        content: Any = request.prompt
        if request.image is not None:
            encoded = base64.b64encode(request.image).decode('ascii')
            url = f'data:{_image_mime(request.image)};base64,{encoded}'
            content = [{'type': 'image_url', 'image_url': {'url': url}},
                       {'type': 'text', 'text': request.prompt}]
        messages: List[Dict[str, Any]] = [{'role': 'user', 'content': content}]
        if request.system:
            messages.insert(0, {'role': 'system', 'content': request.system})
        return {
            'model': self.model,
            'messages': messages,
            'max_tokens': self.max_tokens,
            'temperature': self.temperature,
            'seed': self.seed,
            **self._decoding_fields(),
            **self.extra_params,
            'stream': False,
        }

    def _delay(self, attempt: int, retry_after: Optional[str]) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        delay = min(self.backoff * 2**attempt, self.max_backoff)
        return delay * (0.5 + random.random() / 2)

    async def _complete(self, client: Any,
                        request: GenerationRequest) -> Generation:
        import httpx

        payload = self._payload(request)
        where = ', '.join(self.base_urls)
        last = ''
        refusals = 0
        refused: Optional[BaseException] = None
        for attempt in range(self.max_retries + 1):
            retry_after: Optional[str] = None
            # The least busy reachable server (first of equals) takes it.
            server = min(range(len(self.base_urls)),
                         key=lambda i: (self._unreachable[i], self._in_flight[i]))
            url = f'{self.base_urls[server]}/chat/completions'
            response = None
            refused = None
            self._in_flight[server] += 1
            try:
                response = await client.post(url, json=payload,
                                             headers=self._headers())
            except httpx.ConnectError as exc:
                refused = exc
                last = self._redact(f'{url}: {type(exc).__name__}: {exc}')
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = self._redact(f'{url}: {type(exc).__name__}: {exc}')
            finally:
                self._in_flight[server] -= 1
            self._unreachable[server] = response is None
            self._refused[server] = refused is not None
            if refused is None:
                # An answer, a timeout or a broken answer: someone listens.
                self._connected = True
                self._down = False
            else:
                refusals += 1
                if all(self._refused):
                    if not self._connected and (
                            refusals >= DEAD_SERVER_ATTEMPTS
                            or attempt == self.max_retries):
                        # Nothing listens: stop the run, not each request.
                        raise ServerUnreachableError(
                            no_server_message(self.base_urls, refused))
                    if self._down:
                        # Another request spent its retries on the refusing
                        # servers already: fail at once, not in waves.
                        raise BackendError(
                            f'{where}: failed after {attempt + 1} '
                            f'attempt{"s" if attempt else ""} (the server '
                            f'stopped accepting connections); last: {last}')
            if response is not None:
                if response.status_code == 200:
                    return self._parse(response)
                last = (f'HTTP {response.status_code}: '
                        f'{self._answer_text(response)}')
                if response.status_code not in _RETRY_STATUS:
                    raise BackendError(f'{url} answered {last}')
                retry_after = response.headers.get('retry-after')
            if attempt < self.max_retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        if refused is not None and all(self._refused):
            self._down = True
        raise BackendError(f'{where}: failed after {self.max_retries + 1} '
                           f'attempts; last: {last}')

    def _parse(self, response: Any) -> Generation:
        try:
            body = response.json()
            choice = body['choices'][0]
            text = choice['message']['content']
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError('Malformed completion: '
                               f'{self._answer_text(response)}') from exc
        usage = body.get('usage') or {}
        finish = choice.get('finish_reason') if isinstance(choice, dict) \
            else None
        return Generation(text=(text or '').strip(),
                          prompt_tokens=usage.get('prompt_tokens'),
                          completion_tokens=usage.get('completion_tokens'),
                          finish_reason=finish if isinstance(finish, str)
                          else None)

    async def _run(self, requests: Sequence[GenerationRequest],
                   on_result: ResultCallback) -> None:
        import httpx

        semaphore = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency)

        async with httpx.AsyncClient(timeout=self.timeout,
                                     limits=limits) as client:

            async def one(index: int) -> None:
                async with semaphore:
                    outcome: GenerationOutcome
                    try:
                        outcome = await self._complete(client,
                                                       requests[index])
                    except ServerUnreachableError:
                        raise  # stops the run: no server at all
                    except BackendError as exc:  # recorded, never fatal
                        outcome = exc
                    except Exception as exc:  # recorded, never fatal
                        outcome = BackendError(self._redact(
                            f'{type(exc).__name__}: {exc}'))
                # The loop is single-threaded: the callback (a cache commit)
                # runs before any other request's outcome is handled.
                on_result(index, outcome)

            tasks: List[asyncio.Task] = [
                asyncio.ensure_future(one(i)) for i in range(len(requests))
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()

    def generate_many(self, requests: Sequence[GenerationRequest],
                      on_result: ResultCallback) -> None:
        if not requests:
            return
        self.resolve_model()
        self.check_servers()
        self._in_flight = [0] * len(self.base_urls)
        self._unreachable = [False] * len(self.base_urls)
        self._refused = [False] * len(self.base_urls)
        self._connected = False
        self._down = False
        asyncio.run(self._run(requests, on_result))

    def __repr__(self) -> str:
        urls = self.base_url if len(self.base_urls) == 1 else self.base_urls
        return (f'{self.__class__.__name__}(base_url={urls!r}, '
                f'model={self.model!r}, max_concurrency='
                f'{self.max_concurrency}, decoding={self.decoding!r})')
