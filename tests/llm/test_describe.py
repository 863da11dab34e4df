import csv
import json

import pytest
from PIL import Image
from torch_geometric.data import HeteroData

from mllmrec_pyg.llm.backends import ImageStatisticsDescriber
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.describe import (
    ImageUnavailable,
    describe_items,
    load_image_bytes,
)
from mllmrec_pyg.llm.prompts import DescriptionPrompt
from tests.llm.fake_backend import FakeBackend


def catalog(tmp_path):
    red = tmp_path / 'red.png'
    Image.new('RGB', (4, 2), (200, 20, 20)).save(red)
    blue = tmp_path / 'blue.jpg'
    Image.new('RGB', (3, 3), (20, 40, 210)).save(blue, format='JPEG')
    corrupt = tmp_path / 'bad.png'
    corrupt.write_bytes(b'\x89PNG\r\n\x1a\ngarbage')
    data = HeteroData()
    data.name, data.domain = 'toy', 'Baby'
    data['item'].num_nodes = 5
    data['item'].raw_id = ['a', 'b', 'c', 'd', 'e']
    data['item'].image = [str(red), None, str(tmp_path / 'gone.png'),
                          str(corrupt), str(blue)]
    return data


def test_load_image_bytes(tmp_path):
    data = catalog(tmp_path)
    assert load_image_bytes(data['item'].image[0]).startswith(b'\x89PNG')
    with pytest.raises(ImageUnavailable, match='no image'):
        load_image_bytes(None)
    with pytest.raises(ImageUnavailable, match='missing file'):
        load_image_bytes(data['item'].image[2])
    with pytest.raises(ImageUnavailable, match='unreadable image'):
        load_image_bytes(data['item'].image[3])
    with pytest.raises(ImageUnavailable, match='unreachable URL'):
        load_image_bytes('http://127.0.0.1:9/x.png', timeout=2)


def test_describe_skips_and_caches(tmp_path):
    data = catalog(tmp_path)
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    backend = FakeBackend()
    run = describe_items(data, backend, cache, progress=False)
    assert sorted(run.skipped) == [1, 2, 3]
    assert run.skipped[1] == 'no image'
    assert (run.result.calls, run.result.cache_hits) == (2, 0)
    assert backend.prompts == [DescriptionPrompt().format('Baby')] * 2
    run.write(data, str(tmp_path / 'out'))
    with open(tmp_path / 'out' / 'descriptions.tsv', newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    assert [r[0] for r in rows] == ['item', 'a', 'e']
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert summary['skipped_items']['c'].startswith('missing file')
    assert (summary['items'], summary['descriptions'], summary['skipped'],
            summary['is_llm'], summary['note']) == (5, 2, 3, True, None)

    again = describe_items(data, FakeBackend(), cache, progress=False)
    assert (again.result.calls, again.result.cache_hits) == (0, 2)


def test_image_statistics_is_labelled(tmp_path):
    data = catalog(tmp_path)
    cache = GenerationCache(str(tmp_path / 'c.sqlite'))
    run = describe_items(data, ImageStatisticsDescriber(), cache,
                         items=[0], progress=False)
    assert run.descriptions()[0].startswith(
        'Image statistics (not an MLLM description)')
    summary = run.summary(data)
    assert summary['is_llm'] is False and 'NOT an MLLM' in summary['note']


def test_text_only_backend_is_refused(tmp_path):
    backend = FakeBackend()
    backend.supports_images = False
    with pytest.raises(ValueError, match='cannot read images'):
        describe_items(catalog(tmp_path), backend,
                       GenerationCache(str(tmp_path / 'c.sqlite')))
