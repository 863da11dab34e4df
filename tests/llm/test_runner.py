import sys

import pytest

from mllmrec_pyg.llm.backends import GenerationRequest
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.runner import run_requests
from tests.llm.fake_backend import FakeBackend

JOBS = [(f'u{i}', GenerationRequest(f'prompt number {i}')) for i in range(5)]


def test_rerun_makes_no_calls(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    first = run_requests(FakeBackend(), cache, 'prefer', JOBS, progress=False)
    assert (first.calls, first.cache_hits, first.failures) == (5, 0, {})
    assert first.texts['u3'] == 'pref: mpt number 3'
    assert first.completion_tokens == 20
    backend = FakeBackend()
    second = run_requests(backend, cache, 'prefer', JOBS, progress=False)
    assert (second.calls, second.cache_hits, backend.calls) == (0, 5, 0)
    assert second.texts == first.texts
    assert second.tokens_per_second is None


def test_finish_reasons_and_system_messages(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    jobs = [('a', GenerationRequest('same')),
            ('b', GenerationRequest('same', system='Be brief.'))]
    backend = FakeBackend(finish_reason='length')
    first = run_requests(backend, cache, 'prefer', jobs, progress=False)
    # The system message is part of the request, and of its key.
    assert first.calls == 2
    assert [r.system for r in backend.requests] == [None, 'Be brief.']
    assert first.finish_reasons == {'a': 'length', 'b': 'length'}
    # Read back from the cache with the reasons they were generated with.
    again = run_requests(FakeBackend(), cache, 'prefer', jobs, progress=False)
    assert (again.calls, again.finish_reasons) == (
        0, {'a': 'length', 'b': 'length'})


def test_identical_prompts_are_sent_once(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    jobs = [('a', GenerationRequest('same')), ('b', GenerationRequest('same'))]
    result = run_requests(FakeBackend(), cache, 'prefer', jobs,
                          progress=False)
    assert result.calls == 1 and result.texts == {'a': 'pref: same',
                                                  'b': 'pref: same'}


def test_interrupt_keeps_finished_work(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    with pytest.raises(KeyboardInterrupt):
        run_requests(FakeBackend(interrupt_after=2), cache, 'prefer', JOBS,
                     progress=False)
    assert cache.counts() == {'ok': 2}
    backend = FakeBackend()
    resumed = run_requests(backend, cache, 'prefer', JOBS, progress=False)
    assert (resumed.calls, resumed.cache_hits) == (3, 2)
    assert backend.prompts == [f'prompt number {i}' for i in (2, 3, 4)]
    # The job's totals cover the 2 cached and the 3 new generations.
    assert resumed.completion_tokens == 3 * 4
    assert resumed.cached_completion_tokens == 2 * 4
    totals = resumed.totals()
    assert totals['texts'] == 5 and totals['completion_tokens'] == 5 * 4
    assert totals['generation_seconds'] == round(
        resumed.generation_seconds + resumed.cached_generation_seconds, 3)
    # A rerun makes no call and still reports the whole job's cost.
    again = run_requests(FakeBackend(), cache, 'prefer', JOBS, progress=False)
    assert again.calls == 0 and again.tokens_per_second is None
    assert again.totals()['completion_tokens'] == 5 * 4


def test_shared_generation_counts_once_in_totals(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    jobs = [('a', GenerationRequest('same')), ('b', GenerationRequest('same'))]
    run_requests(FakeBackend(), cache, 'prefer', jobs, progress=False)
    rerun = run_requests(FakeBackend(), cache, 'prefer', jobs, progress=False)
    assert rerun.cache_hits == 2 and rerun.cached_completion_tokens == 4
    totals = rerun.totals()
    assert (totals['texts'], totals['completion_tokens'], totals['prompt_tokens']) == (2, 4, 0)


def test_failures_are_recorded_and_retried(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    result = run_requests(FakeBackend(fail_on=['number 1']), cache, 'prefer',
                          JOBS, progress=False)
    assert result.failures == {'u1': 'BackendError: scripted failure'}
    assert [e.subject for e in cache.failures()] == ['u1']
    retry = run_requests(FakeBackend(), cache, 'prefer', JOBS,
                         progress=False)
    assert (retry.calls, retry.cache_hits, retry.failures) == (1, 4, {})
    assert cache.failures() == []


def test_empty_completions_are_failures_and_retried(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    result = run_requests(FakeBackend(empty_on=['number 2']), cache,
                          'prefer', JOBS, progress=False)
    assert result.failures == {
        'u2': 'EmptyGenerationError: the model returned no text '
              '(1 completion tokens)'}
    assert 'u2' not in result.texts and len(result.texts) == 4
    assert cache.counts() == {'ok': 4, 'failed': 1}
    retry = run_requests(FakeBackend(), cache, 'prefer', JOBS,
                         progress=False)
    assert (retry.calls, retry.cache_hits, retry.failures) == (1, 4, {})
    assert retry.texts['u2'] == 'pref: mpt number 2'


def test_progress_bar_reports_hits_and_failures(tmp_path, capsys,
                                               monkeypatch):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    run_requests(FakeBackend(fail_on=['number 4']), cache, 'prefer',
                 JOBS[:3], progress=False)
    # Not a terminal (captured stderr): no bar even when asked for.
    run_requests(FakeBackend(fail_on=['number 4']), cache, 'prefer', JOBS,
                 progress=True, description='prefs')
    assert capsys.readouterr().err == ''
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    run_requests(FakeBackend(fail_on=['number 4']), cache, 'prefer', JOBS,
                 progress=True, description='prefs')
    err = capsys.readouterr().err
    assert 'prefs' in err and '5/5' in err
    assert 'hits=4' in err and 'failed=1' in err


def test_cached_only_makes_no_call(tmp_path):
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    run_requests(FakeBackend(), cache, 'prefer', JOBS[:2], progress=False)
    backend = FakeBackend()
    result = run_requests(backend, cache, 'prefer', JOBS, progress=False,
                          cached_only=True)
    assert backend.calls == 0 and result.calls == 0
    assert sorted(result.texts) == ['u0', 'u1']
    assert result.pending == ['u2', 'u3', 'u4']


def test_run_summary_exact():
    from torch_geometric.data import HeteroData

    from mllmrec_pyg.llm.runner import SHARED_SUMMARY_KEYS, RunResult, run_summary

    data = HeteroData()
    data.name, data.domain = 'toy', 'Home'
    result = RunResult(texts={'a': 'x', 'b': 'y'}, failures={'c': 'E: no'},
                       calls=2, cache_hits=1, completion_tokens=8,
                       prompt_tokens=30, generation_seconds=2.0,
                       cached_completion_tokens=4, cached_prompt_tokens=10,
                       cached_generation_seconds=1.0)
    summary = run_summary(data, FakeBackend(), result, seconds=2.5004)
    assert summary == {
        'backend': 'fake', 'model': 'fake-1', 'is_llm': True,
        'dataset': 'toy', 'domain': 'Home', 'calls': 2, 'cache_hits': 1,
        'failures': 1, 'generation_params': {'seed': 0},
        'completion_tokens': 8, 'prompt_tokens': 30,
        'generation_seconds': 2.0, 'tokens_per_second': 4.0,
        'all_outputs': {'texts': 2, 'completion_tokens': 12,
                        'prompt_tokens': 40, 'generation_seconds': 3.0,
                        'tokens_per_second': 4.0},
        'seconds': 2.5,
    }
    assert tuple(summary) == SHARED_SUMMARY_KEYS


def test_describe_and_prefer_summaries_share_keys(tmp_path):
    from mllmrec_pyg.llm.describe import describe_items
    from mllmrec_pyg.llm.prefer import generate_preferences
    from mllmrec_pyg.llm.runner import SHARED_SUMMARY_KEYS, run_summary
    from tests.llm.test_describe import catalog
    from tests.llm.test_prefer import DESCRIPTIONS, dataset

    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    images = catalog(tmp_path)
    described = describe_items(images, FakeBackend(), cache, progress=False)
    users = dataset()
    preferred = generate_preferences(users, FakeBackend(), cache,
                                     DESCRIPTIONS, progress=False)
    for run, data in ((described, images), (preferred, users)):
        summary = run.summary(data)
        shared = run_summary(data, run.backend, run.result, run.seconds)
        assert {k: summary[k] for k in SHARED_SUMMARY_KEYS} == shared
    # Each stage adds its own keys only.
    assert described.summary(images)['prompt_tokens'] == 0
    assert 'split_fingerprint' in preferred.summary(users)
    assert 'split_fingerprint' not in described.summary(images)
