r"""The image-to-text path with real vision-language architectures.

The models (a BLIP captioner and a LLaVA-style image-text-to-text model) are
tiny and randomly initialised, but they are saved and reloaded through
``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly as a downloaded
model would be (see ``tests/llm/conftest.py``), and they read PNG and JPEG
files written by the tests.  What they write is noise; what is tested is the
plumbing: images reach the model, prompts are not echoed back as the
description, decoding is deterministic, results are cached, and unusable
images are recorded skips rather than crashes.
"""
from __future__ import annotations

import json
import pathlib
from typing import Dict, List, Optional

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import INTERACTS, REV_INTERACTS
from mllmrec_pyg.llm.backends import HuggingFaceBackend
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.describe import describe_items
from mllmrec_pyg.llm.prompts import DescriptionPrompt

MAX_NEW_TOKENS = 8

#: Image per item, by kind of ``test_images``; ``None``: the item has none.
#: Item 6 reuses item 0's file, so both share one cache entry and one call.
IMAGE_KINDS: List[Optional[str]] = ['png', 'jpeg', 'png_rgba', 'corrupt',
                                    'missing', 'unreachable', 'png', None]
DESCRIBED = [0, 1, 2, 6]
SKIPPED = {3: 'unreadable image', 4: 'missing file', 5: 'unreachable URL',
           7: 'no image'}


def catalogue(images: Dict[str, str]) -> HeteroData:
    r"""8 items with the images of :obj:`IMAGE_KINDS`, two users."""
    num_items = len(IMAGE_KINDS)
    data = HeteroData()
    data['user'].num_nodes = 2
    data['user'].raw_id = ['alice', 'bob']
    data['item'].num_nodes = num_items
    data['item'].raw_id = [f'B00{i}' for i in range(num_items)]
    data['item'].image = [None if kind is None else images[kind]
                          for kind in IMAGE_KINDS]
    edge_index = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5]])
    train = torch.tensor([True, True, False, True, True, False])
    for edge_type, index in ((INTERACTS, edge_index),
                             (REV_INTERACTS, edge_index.flip(0))):
        data[edge_type].edge_index = index
        data[edge_type].train_mask = train
        data[edge_type].val_mask = ~train
        data[edge_type].test_mask = torch.zeros_like(train)
    data.name = 'tiny-baby'
    data.domain = 'Baby'
    return data


def backend_for(folder) -> HuggingFaceBackend:
    return HuggingFaceBackend(str(folder), max_new_tokens=MAX_NEW_TOKENS,
                              device='cpu', num_threads=1)


@pytest.mark.parametrize('kind', ['blip', 'llava'])
def test_tiny_model_is_detected_as_vision_model(kind, tiny_vision_models):
    backend = backend_for(tiny_vision_models[kind])
    assert backend.vision is True
    assert backend.supports_images is True
    assert backend.model.startswith(f'{kind}@sha256:')
    assert str(backend) == (f"HuggingFaceBackend(model='{backend.model}', "
                            "vision=True, device='cpu', decoding='guarded')")
    assert backend.identity()['params'] == {
        'max_new_tokens': MAX_NEW_TOKENS, 'do_sample': False, 'seed': 0,
        'repetition_penalty': 1.05, 'no_repeat_ngram_size': 4,
        'frequency_penalty': 0.3, 'presence_penalty': 0.3,
        'stop': ['\n\n']}


@pytest.mark.parametrize('kind', ['blip', 'llava'])
def test_describe_images_with_skips_and_cache(kind, tiny_vision_models,
                                              test_images, tmp_path):
    data = catalogue(test_images)
    cache = GenerationCache(str(tmp_path / 'generations.sqlite'))
    backend = backend_for(tiny_vision_models[kind])

    first = describe_items(data, backend, cache, progress=False,
                           image_timeout=5.0)

    # Unusable images are skipped with their reason; nothing failed.
    assert sorted(first.skipped) == sorted(SKIPPED)
    for item, reason in SKIPPED.items():
        assert first.skipped[item].startswith(reason), first.skipped[item]
    assert test_images['unreachable'] in first.skipped[5]
    assert test_images['missing'] in first.skipped[4]
    assert first.result.failures == {}

    # Readable images are described; identical images cost one call.
    texts = first.descriptions()
    assert sorted(texts) == DESCRIBED
    assert first.result.calls == 3
    assert first.result.cache_hits == 0
    assert texts[0] == texts[6]
    for text in texts.values():
        assert text and text.strip() == text
    # The tiny models never stop early (see conftest), so each call writes
    # exactly MAX_NEW_TOKENS new tokens; a prompt echoed back would add more.
    assert first.result.completion_tokens == 3 * MAX_NEW_TOKENS
    prompt = DescriptionPrompt().format('Baby')
    assert first.prompt == prompt
    assert 'relevant to the Baby' in prompt
    for text in texts.values():
        assert 'accurate and concise textual description' not in text

    # Artefacts: ids as in the dataset, skips with reasons.
    out = tmp_path / 'out'
    first.write(data, str(out))
    lines = (out / 'descriptions.tsv').read_text().splitlines()
    assert lines[0] == 'item\tdescription'
    assert [line.split('\t')[0] for line in lines[1:]] == [
        f'B00{i}' for i in DESCRIBED]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['backend'] == 'hf'
    assert summary['model'] == backend.model
    assert summary['is_llm'] is True
    assert (summary['items'], summary['descriptions'], summary['calls'],
            summary['skipped'], summary['failures']) == (8, 4, 3, 4, 0)
    assert sorted(summary['skipped_items']) == [
        f'B00{i}' for i in sorted(SKIPPED)]

    # A rerun makes no call; a fresh cache regenerates the same texts
    # (greedy decoding with a fixed seed).
    second = describe_items(data, backend, cache, progress=False,
                            image_timeout=5.0)
    assert (second.result.calls, second.result.cache_hits) == (0, 4)
    assert second.descriptions() == texts
    fresh = GenerationCache(str(tmp_path / 'fresh.sqlite'))
    third = describe_items(data, backend_for(tiny_vision_models[kind]), fresh,
                           progress=False, image_timeout=5.0)
    assert third.result.calls == 3
    assert third.descriptions() == texts
    cache.close()
    fresh.close()


def test_image_bytes_not_path_key_the_cache(tiny_vision_models, test_images,
                                             tmp_path):
    # The same file under a new name is a cache hit; new pixels are not.
    from PIL import Image

    data = catalogue(test_images)
    cache = GenerationCache(str(tmp_path / 'generations.sqlite'))
    backend = backend_for(tiny_vision_models['llava'])
    describe_items(data, backend, cache, items=[0], progress=False)

    copy = tmp_path / 'copy_of_red_shirt.png'
    copy.write_bytes(pathlib.Path(test_images['png']).read_bytes())
    repainted = tmp_path / 'repainted.png'
    Image.new('RGB', (48, 40), (201, 20, 20)).save(repainted, format='PNG')
    data['item'].image = [str(copy), str(repainted)] + [None] * 6
    run = describe_items(data, backend, cache, items=[0, 1], progress=False)
    assert (run.result.cache_hits, run.result.calls) == (1, 1)
    cache.close()


def test_text_only_backend_is_refused(tiny_vision_models, test_images,
                                      tmp_path):
    data = catalogue(test_images)
    backend = HuggingFaceBackend(str(tiny_vision_models['llava']),
                                 vision=False)
    cache = GenerationCache(str(tmp_path / 'generations.sqlite'))
    with pytest.raises(ValueError, match='cannot read images'):
        describe_items(data, backend, cache, progress=False)
    assert len(cache) == 0
    cache.close()


def test_cli_describe_with_a_local_vision_model(tiny_vision_models,
                                                tiny_mmrec_folder, tmp_path):
    from mllmrec_pyg.cli import main

    out = tmp_path / 'describe'
    argv = ['describe', str(tiny_mmrec_folder), '--backend', 'hf', '--model',
            str(tiny_vision_models['llava']), '--max-new-tokens',
            str(MAX_NEW_TOKENS), '--threads', '1', '--cache',
            str(tmp_path / 'generations.sqlite'), '--out', str(out),
            '--no-progress']
    assert main(argv) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['domain'] == 'Baby'
    assert (summary['items'], summary['descriptions'], summary['calls'],
            summary['cache_hits'], summary['skipped'],
            summary['failures']) == (6, 3, 3, 0, 3, 0)
    assert sorted(summary['skipped_items']) == ['2', '3', '5']
    assert summary['skipped_items']['2'].startswith('missing file')
    assert summary['skipped_items']['3'] == 'no image'
    assert summary['skipped_items']['5'].startswith('unreadable image')
    rows = (out / 'descriptions.tsv').read_text().splitlines()
    assert [row.split('\t')[0] for row in rows] == ['item', '0', '1', '4']

    # The same command again: zero calls, same file.
    first = (out / 'descriptions.tsv').read_text()
    assert main(argv) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert (summary['calls'], summary['cache_hits']) == (0, 3)
    assert (out / 'descriptions.tsv').read_text() == first
