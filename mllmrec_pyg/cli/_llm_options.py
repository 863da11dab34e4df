r"""Command-line options shared by ``mllmrec describe``, ``mllmrec prefer``
and ``mllmrec run``: the backend, its model and server, its decoding, the
preference settings (system prompt, runaway cut), the cache and the shard
(``--shard I/N``, ``describe`` and ``prefer``); and the
argparse types :func:`positive_int` and :func:`positive_float`, which refuse
a zero or negative value at parse time with the option named."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from mllmrec_pyg.llm.backends import BACKENDS, GenerationBackend, make_backend
from mllmrec_pyg.llm.backends.decoding import DECODINGS
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.shard import Shard, parse_shard

__all__ = ['add_backend_options', 'add_decoding_options', 'add_http_options',
           'add_preference_options', 'add_shard_option', 'backend_options',
           'build_backend', 'open_cache', 'open_cache_and_backend',
           'positive_float', 'positive_int', 'server_param', 'server_params',
           'shard', 'system_prompt']


def positive_int(text: str) -> int:
    r"""An argparse :obj:`type`: an integer :obj:`>= 1`.

    argparse reports a refusal as one line naming the option, e.g.
    :obj:`"argument --concurrency: must be an integer >= 1 (got '0')"`.

    Args:
        text (str): The option's value as typed.
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'must be an integer >= 1 (got {text!r})')
    return value


def positive_float(text: str) -> float:
    r"""An argparse :obj:`type`: a finite number :obj:`> 0`.

    argparse reports a refusal as one line naming the option, e.g.
    :obj:`"argument --timeout: must be a number > 0 (got '0')"`.

    Args:
        text (str): The option's value as typed.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f'must be a number > 0 (got {text!r})')
    return value


def server_param(text: str) -> Tuple[str, Any]:
    r"""An argparse :obj:`type`: :obj:`KEY=VALUE`, a request field for an
    OpenAI-compatible server; :obj:`VALUE` is read as JSON when it parses
    (:obj:`repeat_penalty=1.2` gives the number 1.2, :obj:`top_k=40` the
    integer 40), else kept as a string.

    Args:
        text (str): The option's value as typed.
    """
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f'must be KEY=VALUE, e.g. repeat_penalty=1.2 (got {text!r})')
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def add_http_options(parser: Any) -> None:
    r"""``--concurrency`` and ``--timeout`` of the OpenAI-compatible HTTP
    backend, on a parser or an argument group."""
    parser.add_argument('--concurrency', type=positive_int, default=4,
                        help="requests in flight at once ('openai'; default: 4)")
    parser.add_argument('--timeout', type=positive_float, default=120.0,
                        help="seconds per request attempt ('openai'; default: 120)")


def add_decoding_options(parser: Any) -> None:
    r"""``--decoding`` and ``--server-param`` of the text backends, on a
    parser or an argument group (``prefer``, ``describe``, ``run``); both are
    part of the generation cache key and of ``run``'s stage keys."""
    parser.add_argument('--decoding', choices=DECODINGS, default=DECODINGS[0],
                        help="repetition control of the text backends: 'guarded' "
                        "('smollm2'/'hf': repetition_penalty 1.05, "
                        'no_repeat_ngram_size 4, frequency and presence penalties 0.3 '
                        "on the output, stop at a blank line; 'openai': "
                        'frequency_penalty 0.3, presence_penalty 0.3, stop at a blank '
                        "line) or 'legacy' (none of these, as earlier versions; their "
                        "cached outputs are reused) (default: 'guarded')")
    parser.add_argument('--server-param', type=server_param, action='append',
                        default=None, metavar='KEY=VALUE',
                        help="a further request field for an 'openai' server, e.g. "
                        'repeat_penalty=1.2 (llama.cpp) or repetition_penalty=1.2 '
                        '(vLLM); repeatable; part of the cache key (default: none)')


def add_preference_options(parser: Any) -> None:
    r"""``--system-prompt`` and ``--no-runaway-cut`` of Prompt2 (``prefer``,
    ``run``), on a parser or an argument group; read them with
    :func:`system_prompt` and :obj:`not args.no_runaway_cut`."""
    parser.add_argument('--system-prompt', default='default',
                        metavar='{default,none,FILE}',
                        help="the system message sent before Prompt2: 'default' (asks "
                        "for one paragraph of prose, not a list), 'none' (Prompt2 alone, "
                        "as earlier versions) or a text file (default: 'default')")
    parser.add_argument('--no-runaway-cut', action='store_true',
                        help='write the preferences as generated; by default a 3-gram '
                        'repeated 3+ times is cut at its second occurrence (back to the '
                        'last full sentence), a list after its 5th line, and an answer '
                        'the token cap interrupted after its last full sentence '
                        '(default: off, the preferences are cut)')


def system_prompt(value: str) -> Optional[str]:
    r"""The system message of ``--system-prompt``: :obj:`"default"` is
    :obj:`~mllmrec_pyg.llm.prompts.PREFERENCE_SYSTEM_PROMPT`, :obj:`"none"`
    is :obj:`None` (no system message), anything else a text file's
    content.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is empty.
    """
    from mllmrec_pyg.llm.prompts import PREFERENCE_SYSTEM_PROMPT

    if value == 'default':
        return PREFERENCE_SYSTEM_PROMPT
    if value == 'none':
        return None
    try:
        with open(value, encoding='utf-8') as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"--system-prompt '{value}' not found: pass "
                                "'default', 'none' or a text file") from None
    if not text:
        raise ValueError(f"--system-prompt '{value}' is empty: pass 'none' to "
                         'send no system message')
    return text


def add_shard_option(parser: Any, what: str) -> None:
    r"""``--shard I/N`` of ``prefer`` (:obj:`what="users"`) and ``describe``
    (:obj:`what="items"`), on a parser or an argument group; read it with
    :func:`shard` (a bad value is a one-line error when the command runs).

    Args:
        parser (Any): The parser or argument group.
        what (str): What is sharded, for the help text.
    """
    parser.add_argument('--shard', default=None, metavar='I/N',
                        help=f'only shard I of N (1-based: 1/2 and 2/2 are the '
                        f'two halves) of the {what}, chosen by a stable hash of '
                        f'their raw ids (SHA-256, the same share on every machine '
                        f'and rerun; shards never overlap and together cover all '
                        f'{what}); needs --cache, a file of its own per shard, '
                        f'for `mllmrec cache merge`; the outputs hold the shard\'s '
                        f'{what} only (default: all {what})')


def shard(args: argparse.Namespace) -> Optional[Shard]:
    r"""The :class:`~mllmrec_pyg.llm.shard.Shard` of ``--shard`` (:obj:`None`
    without it).

    Raises:
        ValueError: One line naming ``--shard`` and the fix, for a value
            other than :obj:`I/N` with :obj:`1 <= I <= N`, or a shard
            without ``--cache``.
    """
    if args.shard is None:
        return None
    value = parse_shard(args.shard)
    if not args.cache:
        raise ValueError(f'--shard {value} needs --cache FILE.sqlite, a cache '
                         'file of its own per shard (merge them afterwards with '
                         '`mllmrec cache merge OUT.sqlite IN1.sqlite ...`)')
    return value


def server_params(pairs: Optional[Sequence[Tuple[str, Any]]]) -> Dict[str, Any]:
    r"""The fields of the repeated ``--server-param`` (later ones win)."""
    return dict(pairs or ())


def add_backend_options(parser: argparse.ArgumentParser,
                        default_backend: str) -> None:
    r"""The ``backend`` option group: backend, model, server, generation
    settings, cache and progress bar."""
    group = parser.add_argument_group('backend')
    group.add_argument('--backend', choices=BACKENDS, default=default_backend,
                       help=f'generation backend (default: {default_backend})')
    group.add_argument('--model', default=None,
                       help="the served model name ('openai'; default: "
                       "$MLLMREC_OPENAI_MODEL or the server's first model) or a "
                       "model folder / Hub id ('hf')")
    group.add_argument('--base-url', default=None,
                       help="API root of an OpenAI-compatible server, e.g. "
                       "http://127.0.0.1:8080/v1, or several comma-separated "
                       "servers of the same model that share the work (default: "
                       "$MLLMREC_OPENAI_BASE_URL or $OPENAI_BASE_URL); the API "
                       "key is read from $MLLMREC_OPENAI_API_KEY or "
                       "$OPENAI_API_KEY only")
    group.add_argument('--max-new-tokens', type=positive_int, default=160,
                       help='most tokens to generate (default: 160)')
    group.add_argument('--seed', type=int, default=0,
                       help='generation seed (default: 0)')
    add_decoding_options(group)
    add_http_options(group)
    group.add_argument('--batch-size', type=positive_int, default=1,
                       help="text prompts generated together by a local model ('hf'; "
                       "batching changes greedy outputs slightly, so it is part of the "
                       "cache key; default: 1)")
    group.add_argument('--threads', type=positive_int, default=None,
                       help="CPU threads of local models (default: 1 for "
                       "'smollm2', unchanged for 'hf')")
    group.add_argument('--cache', default=None,
                       help='generation cache file (default: '
                       '$MLLMREC_HOME/llm/generations.sqlite)')
    group.add_argument('--export-cache', default=None, metavar='FILE',
                       help='also export the whole cache to FILE (.csv or '
                       '.parquet)')
    group.add_argument('--no-progress', action='store_true',
                       help='hide the progress bar')


def backend_options(name: str, max_new_tokens: int, concurrency: int, timeout: float,
                    threads: Optional[int] = None, seed: Optional[int] = None,
                    batch_size: int = 1, decoding: str = DECODINGS[0],
                    server_params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    r"""The keyword arguments of :func:`~mllmrec_pyg.llm.backends.make_backend`
    for backend :obj:`name` from the command-line options (:obj:`None`
    values are left to the backend's defaults).

    The decoding preset is always named (so it is part of every stage key
    built from these options, e.g. ``mllmrec run``'s).

    Args:
        name (str): The backend's command-line name.
        max_new_tokens (int): ``--max-new-tokens``.
        concurrency (int): ``--concurrency`` (:obj:`"openai"`).
        timeout (float): ``--timeout`` (:obj:`"openai"`).
        threads (int, optional): ``--threads``. (default: :obj:`None`)
        seed (int, optional): ``--seed``. (default: :obj:`None`)
        batch_size (int, optional): ``--batch-size`` (:obj:`"hf"`).
            (default: :obj:`1`)
        decoding (str, optional): ``--decoding``. (default: :obj:`"guarded"`)
        server_params (Mapping[str, Any], optional): ``--server-param``
            fields (:obj:`"openai"`). (default: :obj:`None`)

    Raises:
        ValueError: If ``--batch-size`` or ``--server-param`` is given for a
            backend that does not take it.
    """
    if server_params and name != 'openai':
        raise ValueError("--server-param applies to --backend openai only (the "
                         f"'{name}' backend sends no HTTP request)")
    if name == 'openai':
        options: Dict[str, Any] = dict(max_tokens=max_new_tokens, seed=seed,
                                       max_concurrency=concurrency, timeout=timeout,
                                       decoding=decoding)
        if server_params:
            options['extra_params'] = dict(server_params)
        return options
    if name not in ('hf', 'smollm2'):
        return {}
    options = dict(max_new_tokens=max_new_tokens, seed=seed, num_threads=threads,
                   decoding=decoding)
    if batch_size != 1:
        if name != 'hf':
            raise ValueError("--batch-size applies to --backend hf only ('smollm2' "
                             'generates one prompt at a time)')
        options['batch_size'] = batch_size
    return options


def build_backend(args: argparse.Namespace) -> GenerationBackend:
    r"""Returns the backend the parsed options describe."""
    options = backend_options(args.backend, args.max_new_tokens, args.concurrency,
                              args.timeout, threads=args.threads, seed=args.seed,
                              batch_size=args.batch_size, decoding=args.decoding,
                              server_params=server_params(args.server_param))
    return make_backend(args.backend, model=args.model, base_url=args.base_url,
                        **options)


def open_cache_and_backend(args: argparse.Namespace
                           ) -> Tuple[GenerationCache, GenerationBackend]:
    r"""The cache first, then the backend: an unusable cache is refused
    before a model loads, and the cache is closed if the backend fails."""
    cache = open_cache(args)
    try:
        return cache, build_backend(args)
    except BaseException:
        cache.close()
        raise


def open_cache(args: argparse.Namespace) -> GenerationCache:
    r"""Opens :obj:`--cache` (default: :obj:`$MLLMREC_HOME/llm/
    generations.sqlite`); an unusable cache is a one-line
    :class:`ValueError` naming the file and the fix."""
    return GenerationCache(args.cache)
