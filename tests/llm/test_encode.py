import torch

from mllmrec_pyg.llm.encode import (
    DEFAULT_ENCODER,
    TextEncoder,
    default_encoder_tokenizer,
    default_token_budget,
)


def test_encoder_with_content_keyed_cache(tmp_path):
    cache = tmp_path / 'emb.sqlite'
    encoder = TextEncoder(cache=str(cache))
    assert encoder.name == DEFAULT_ENCODER and encoder.dim == 384
    assert encoder.token_budget() == 254
    assert encoder.revision.startswith('sha256:')
    texts = ['a red ceramic mug', 'running shoes', 'a red ceramic mug']
    first = encoder.encode(texts)
    assert first.shape == (3, 384) and first.dtype == torch.float32
    assert torch.equal(first[0], first[2])
    assert encoder.encoded == 2 and encoder.cache_hits == 0
    direct = encoder.model.encode(['running shoes'], convert_to_tensor=True)
    assert torch.allclose(first[1], direct[0].cpu(), atol=1e-6)
    assert str(encoder) == (f"TextEncoder('{DEFAULT_ENCODER}', revision="
                            f"'{encoder.revision}', dim=384)")

    # A second encoder on the same cache computes nothing.
    again = TextEncoder(cache=str(cache))
    assert torch.equal(again.encode(texts), first)
    assert again.encoded == 0 and again.cache_hits == 3
    # The encoder's name and revision are part of the key.
    renamed = TextEncoder(cache=str(cache), name='other', revision='r1')
    assert renamed.key('x') != again.key('x')
    renamed.encode(['running shoes'])
    assert renamed.encoded == 1
    assert encoder.encode([]).shape == (0, 384)


def test_loading_prints_no_weight_bar(tmp_path, capfd):
    from transformers.utils import logging

    assert logging.is_progress_bar_enabled()
    TextEncoder(cache=False)
    assert 'Loading weights' not in capfd.readouterr().err
    # The bar's global switch is restored for the user's own loads.
    assert logging.is_progress_bar_enabled()


def test_default_tokenizer_without_weights_matches_the_encoder():
    tokenizer = default_encoder_tokenizer()
    assert default_encoder_tokenizer() is tokenizer  # loaded once
    assert default_token_budget() == 254
    encoder = TextEncoder(cache=False)
    assert default_token_budget() == encoder.token_budget()
    assert tokenizer.model_max_length == encoder.tokenizer.model_max_length
    text = 'Unbelievably comfortable Straße, 250 ml — anti-colic VALVE!'
    assert tokenizer(text, add_special_tokens=False,
                     return_offsets_mapping=True) == encoder.tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True)


def test_progress_bar_changes_no_embedding(monkeypatch, capsys):
    import sys

    import mllmrec_pyg.llm.encode as encode

    # Texts of the same length (ties in the longest-first order) and batches
    # of 3: the batches are those of one sentence-transformers call on the
    # unique texts.
    unique = ['a red mug', 'a tin cup', 'blue shoe', 'running shoes', 'a lamp',
              'desk', 'a red ceramic mug with a handle', 'tea']
    texts = unique + ['a tin cup']
    quiet = TextEncoder(cache=False, batch_size=3)
    plain = quiet.encode(texts)
    assert capsys.readouterr().err == ''
    single_call = torch.from_numpy(quiet.model.encode(
        unique, batch_size=3, convert_to_numpy=True, show_progress_bar=False))
    assert torch.equal(plain[:8], single_call) and torch.equal(plain[8], plain[1])

    # progress=True shows nothing where stderr is not a terminal ...
    shown = TextEncoder(cache=False, batch_size=3, progress=True)
    assert torch.equal(shown.encode(texts), plain)
    assert capsys.readouterr().err == ''
    # ... and a bar on a terminal (here without the delay of a few seconds).
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    monkeypatch.setattr(encode, 'PROGRESS_DELAY', 0.0)
    assert torch.equal(shown.encode(texts), plain)
    err = capsys.readouterr().err
    assert 'encoding' in err and '8/8' in err  # the unique texts
    assert torch.equal(quiet.encode(texts), plain)
    assert capsys.readouterr().err == ''
