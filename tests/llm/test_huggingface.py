import pytest

from mllmrec_pyg.llm.backends import (
    BackendError,
    GenerationRequest,
    HuggingFaceBackend,
)
from mllmrec_pyg.llm.backends.huggingface import cut_at_stop

WORDS = '<pad> <unk> <s> </s> user assistant : likes red mugs socks'.split()
CHAT = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s> "
        "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")


@pytest.fixture(scope='module')
def tiny_text_model(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    folder = tmp_path_factory.mktemp('tiny_llama')
    vocab = {word: i for i, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token='<unk>'))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix='##')
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token='<s>', eos_token='</s>',
        unk_token='<unk>', pad_token='<pad>')
    tokenizer.chat_template = CHAT
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(WORDS), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=64, bos_token_id=2, eos_token_id=3,
        pad_token_id=0)).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_text_generation_is_greedy_and_batched(tiny_text_model):
    backend = HuggingFaceBackend(tiny_text_model, max_new_tokens=4,
                                 batch_size=2)
    assert backend.name == 'hf' and not backend.vision
    assert backend.model.startswith('tiny_llama')
    assert str(backend) == (f"HuggingFaceBackend(model='{backend.model}', "
                            "vision=False, device='cpu', decoding='guarded')")
    requests = [GenerationRequest('likes red mugs'),
                GenerationRequest('socks'),
                GenerationRequest('likes socks')]
    outcomes = {}
    backend.generate_many(requests, outcomes.__setitem__)
    assert sorted(outcomes) == [0, 1, 2]
    for outcome in outcomes.values():
        assert 0 < outcome.completion_tokens <= 4
        assert set(outcome.text.split()) <= set(WORDS)
        # The cap ended it, or the end of text did before the cap.
        assert outcome.finish_reason == (
            'length' if outcome.completion_tokens == 4 else 'stop')
    # Greedy with a fixed seed: the same prompt gives the same text.
    single = HuggingFaceBackend(tiny_text_model, max_new_tokens=4)
    assert single.generate(requests[1]) == single.generate(requests[1])
    # Batching changes greedy outputs in the last digits: it is keyed, and
    # so is the guarded decoding.
    guarded = {'repetition_penalty': 1.05, 'no_repeat_ngram_size': 4,
               'frequency_penalty': 0.3, 'presence_penalty': 0.3,
               'stop': ['\n\n']}
    assert backend.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0, 'batch_size': 2,
        **guarded}
    assert single.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0, **guarded}


def test_decoding_presets_and_their_keys(tiny_text_model):
    legacy = HuggingFaceBackend(tiny_text_model, max_new_tokens=4,
                                decoding='legacy')
    # The legacy preset keys (and so reuses) what earlier versions cached.
    assert legacy.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0}
    assert str(legacy).endswith("decoding='legacy')")
    assert 'repetition_penalty' not in legacy._generate_kwargs(None)
    explicit = HuggingFaceBackend(tiny_text_model, max_new_tokens=4,
                                  decoding='legacy', repetition_penalty=1.5,
                                  stop=['socks'])
    assert explicit.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0,
        'repetition_penalty': 1.5, 'stop': ['socks']}
    tokenizer, _ = explicit.load()
    kwargs = explicit._generate_kwargs(tokenizer)
    assert kwargs['repetition_penalty'] == 1.5
    assert 'no_repeat_ngram_size' not in kwargs
    # The stop string ends the generation once the new text holds it.
    import torch
    stop, = kwargs['stopping_criteria']
    socks, red = tokenizer.convert_tokens_to_ids(['socks', 'red'])
    prompt = [2, 4, 6]
    assert stop(torch.tensor([prompt + [red], prompt + [red]]), None).tolist() \
        == [False, False]
    assert stop(torch.tensor([prompt + [red, socks], prompt + [red, red]]),
                None).tolist() == [True, False]
    with pytest.raises(ValueError, match="Unknown decoding 'greedy': use "
                       '--decoding guarded or legacy'):
        HuggingFaceBackend(tiny_text_model, decoding='greedy')
    with pytest.raises(ValueError, match='repetition_penalty must be > 0'):
        HuggingFaceBackend(tiny_text_model, repetition_penalty=0.0)
    with pytest.raises(ValueError, match='no_repeat_ngram_size must be >= 0'):
        HuggingFaceBackend(tiny_text_model, no_repeat_ngram_size=-1)


def test_output_only_frequency_and_presence_penalties(tiny_text_model):
    import torch

    from mllmrec_pyg.llm.backends.huggingface import _output_penalty

    penalty, = _output_penalty(0.5, 0.25)
    prompt = [2, 7, 7]
    scores = torch.zeros(1, len(WORDS))
    # The first call sees the prompt only: the prompt's tokens do not count.
    assert penalty(torch.tensor([prompt]), scores).tolist() == scores.tolist()
    out = penalty(torch.tensor([prompt + [8, 8, 9]]), scores)[0].tolist()
    # Token 8 twice in the output: 2 * 0.5 + 0.25; token 9 once: 0.75.
    assert out[8] == -1.25 and out[9] == -0.75
    assert out[7] == 0.0 and sum(out) == -2.0
    backend = HuggingFaceBackend(tiny_text_model, max_new_tokens=4,
                                 decoding='legacy', frequency_penalty=0.5)
    assert backend.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0,
        'frequency_penalty': 0.5}
    assert 'logits_processor' in backend._generate_kwargs(None)
    assert backend.generate(GenerationRequest('socks')).text is not None


def test_system_message_and_stop_strings(tiny_text_model):
    backend = HuggingFaceBackend(tiny_text_model, max_new_tokens=4)
    tokenizer, _ = backend.load()
    assert backend._chat_text(tokenizer, GenerationRequest(
        'likes socks', system='be brief'), image=False) == (
        'system : be brief </s> user : likes socks </s> assistant :')
    assert backend._chat_text(tokenizer, GenerationRequest('likes socks'),
                              image=False) == (
        'user : likes socks </s> assistant :')
    assert cut_at_stop('red mugs\n\nsocks\n\n', ['\n\n']) == (
        'red mugs', True)
    assert cut_at_stop('red mugs socks', ['socks', 'mugs']) == ('red ', True)
    assert cut_at_stop('red mugs', ['\n\n']) == ('red mugs', False)
    assert cut_at_stop('red', []) == ('red', False)
    # A stop string ends the text: the finish reason is "stop" at the cap.
    assert backend._finish(tokenizer, 'red\n\nmugs', [7, 8], 4) == (
        'red', 'stop')
    assert backend._finish(tokenizer, ' red mugs ', [7, 8, 9, 10], 4) == (
        'red mugs', 'length')
    assert backend._finish(tokenizer, 'red', [7, 3], 2) == ('red', 'stop')


def test_threads_apply_to_generation_only(tiny_text_model, monkeypatch):
    # A cold-cache run generates and then trains in one process: the
    # generation thread count must not leak into the training.
    import torch

    seen = []
    backend = HuggingFaceBackend(tiny_text_model, max_new_tokens=2,
                                 num_threads=1)
    original = backend._text_batch
    monkeypatch.setattr(backend, '_text_batch', lambda batch: (
        seen.append(torch.get_num_threads()), original(batch))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend.generate(GenerationRequest('socks'))
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_text_model_refuses_images(tiny_text_model):
    backend = HuggingFaceBackend(tiny_text_model, max_new_tokens=2)
    with pytest.raises(BackendError, match='not a vision-language model'):
        backend.generate(GenerationRequest('x', image=b'\x89PNG'))


def test_missing_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        HuggingFaceBackend(str(tmp_path / 'nope'))


def test_command_line_batch_size(tiny_text_model):
    import argparse

    from mllmrec_pyg.cli._llm_options import add_backend_options, build_backend

    parser = argparse.ArgumentParser()
    add_backend_options(parser, default_backend='smollm2')
    args = parser.parse_args(['--backend', 'hf', '--model', tiny_text_model,
                              '--batch-size', '3'])
    assert build_backend(args).batch_size == 3
    args = parser.parse_args(['--batch-size', '3'])
    with pytest.raises(ValueError, match='applies to --backend hf only'):
        build_backend(args)
