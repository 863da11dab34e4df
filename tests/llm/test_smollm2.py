import pytest

from mllmrec_pyg.llm.backends import (
    GenerationRequest,
    SmolLM2Backend,
    smollm2_gguf_path,
)


@pytest.mark.slow
def test_smollm2_offline_greedy_and_deterministic():
    try:
        gguf = smollm2_gguf_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    pytest.importorskip('gguf')
    pytest.importorskip('accelerate')
    backend = SmolLM2Backend(max_new_tokens=6)
    assert backend.name == 'smollm2' and not backend.supports_images
    assert backend.model.startswith('SmolLM2-135M-Instruct.Q4_1.gguf@sha256:')
    assert gguf.endswith('SmolLM2-135M-Instruct.Q4_1.gguf')
    request = GenerationRequest('Name one colour.')
    first = backend.generate(request)
    assert first.text and 0 < first.completion_tokens <= 6
    assert backend.generate(request) == first
    assert first.finish_reason in ('stop', 'length')
    assert backend.identity()['params'] == {
        'max_new_tokens': 6, 'do_sample': False, 'seed': 0,
        'repetition_penalty': 1.05, 'no_repeat_ngram_size': 4,
        'frequency_penalty': 0.3, 'presence_penalty': 0.3,
        'stop': ['\n\n']}
    # The legacy decoding keys what earlier versions cached.
    legacy = SmolLM2Backend(max_new_tokens=6, decoding='legacy')
    assert legacy.identity()['params'] == {'max_new_tokens': 6,
                                           'do_sample': False, 'seed': 0}
    with pytest.raises(ValueError, match="Unknown decoding 'x'"):
        SmolLM2Backend(decoding='x')
