import pytest

from mllmrec_pyg.llm.backends import (
    BackendError,
    GenerationRequest,
    HuggingFaceBackend,
)

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
                            "vision=False, device='cpu')")
    requests = [GenerationRequest('likes red mugs'),
                GenerationRequest('socks'),
                GenerationRequest('likes socks')]
    outcomes = {}
    backend.generate_many(requests, outcomes.__setitem__)
    assert sorted(outcomes) == [0, 1, 2]
    for outcome in outcomes.values():
        assert 0 < outcome.completion_tokens <= 4
        assert set(outcome.text.split()) <= set(WORDS)
    # Greedy with a fixed seed: the same prompt gives the same text.
    single = HuggingFaceBackend(tiny_text_model, max_new_tokens=4)
    assert single.generate(requests[1]) == single.generate(requests[1])
    # Batching changes greedy outputs in the last digits: it is keyed.
    assert backend.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0, 'batch_size': 2}
    assert single.identity()['params'] == {
        'max_new_tokens': 4, 'do_sample': False, 'seed': 0}


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
