import csv
import json
import time

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
from tests.llm.image_server import ImageServer, bomb_png, png_bytes


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


def test_image_timeout_bounds_the_whole_download():
    # 0.05 s between bytes: every read is quick, the whole is ~4 s.
    with ImageServer(trickle_interval=0.05) as server:
        url = server.url('trickle.png')
        started = time.monotonic()
        with pytest.raises(ImageUnavailable) as info:
            load_image_bytes(url, timeout=0.5)
        assert time.monotonic() - started < 20
        assert str(info.value) == (f'image URL {url} took longer than 0.5 s '
                                   'to download (--image-timeout)')
        assert load_image_bytes(server.url('ok.png')) == server.png


def test_image_size_cap():
    with ImageServer(huge_bytes=50 * 2**20) as server:
        url = server.url('huge.png')
        with pytest.raises(ImageUnavailable) as info:
            load_image_bytes(url)  # the default cap: 20 MB
        assert str(info.value) == (f'image {url} is 50 MB, over the '
                                   '--max-image-mb cap of 20 MB')
        url = server.url('endless.png')  # no Content-Length: counted
        with pytest.raises(ImageUnavailable) as info:
            load_image_bytes(url, max_bytes=2**20)
        assert str(info.value) == (f'image {url} is more than 1 MB, over '
                                   'the --max-image-mb cap of 1 MB')
        assert server.sent['endless.png'] < 20 * 2**20
        url = server.url('ok.png')
        with pytest.raises(ImageUnavailable) as info:
            load_image_bytes(url, max_bytes=10)
        assert str(info.value) == (f'image {url} is {len(server.png)} bytes, '
                                   'over the --max-image-mb cap of 10 bytes')


def test_local_image_size_cap(tmp_path):
    path = tmp_path / 'big.png'
    path.write_bytes(png_bytes(64, (1, 2, 3)) + b'\x00' * 3 * 2**20)
    with pytest.raises(ImageUnavailable) as info:
        load_image_bytes(str(path), max_bytes=2**20)
    assert str(info.value) == (f'image {path} is 3 MB, over the --max-image-mb '
                               'cap of 1 MB')


def test_decompression_is_bounded(tmp_path, monkeypatch):
    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(bomb_png())
    assert bomb.stat().st_size < 2000
    message = (f'image {bomb} is 12000x12000 pixels, over the decoding '
               'limit of 89478485 pixels (PIL.Image.MAX_IMAGE_PIXELS)')
    with pytest.raises(ImageUnavailable) as info:
        load_image_bytes(str(bomb))
    assert str(info.value) == message
    # Switched off by someone else: still bounded by PIL's default.
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', None)
    with pytest.raises(ImageUnavailable) as info:
        load_image_bytes(str(bomb))
    assert str(info.value) == message
    # Under the limit, an image is decoded.
    small = tmp_path / 'small.png'
    small.write_bytes(png_bytes(10))
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
    assert load_image_bytes(str(small)) == small.read_bytes()
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 99)
    with pytest.raises(ImageUnavailable, match='10x10 pixels, over the '
                       'decoding limit of 99 pixels'):
        load_image_bytes(str(small))


def test_refused_images_are_named_skips(tmp_path):
    with ImageServer(trickle_interval=0.05) as server:
        data = HeteroData()
        data.name, data.domain = 'toy', 'Baby'
        data['item'].num_nodes = 4
        data['item'].raw_id = ['ok', 'slow', 'huge', 'bomb']
        data['item'].image = [server.url(name) for name in (
            'ok.png', 'trickle.png', 'huge.png', 'bomb.png')]
        cache = GenerationCache(str(tmp_path / 'c.sqlite'))
        run = describe_items(data, FakeBackend(), cache, progress=False,
                             image_timeout=0.5, max_image_mb=1)
        summary = run.summary(data)
        assert summary['descriptions'] == 1 and summary['failures'] == 0
        assert summary['skipped_items'] == {
            'slow': f"image URL {server.url('trickle.png')} took longer "
                    'than 0.5 s to download (--image-timeout)',
            'huge': f"image {server.url('huge.png')} is 50 MB, over the "
                    '--max-image-mb cap of 1 MB',
            'bomb': f"image {server.url('bomb.png')} is 12000x12000 pixels, "
                    'over the decoding limit of 89478485 pixels '
                    '(PIL.Image.MAX_IMAGE_PIXELS)',
        }
        with pytest.raises(ValueError, match='max_image_mb must be > 0'):
            describe_items(data, FakeBackend(), cache, max_image_mb=0)
        with pytest.raises(ValueError, match='image_timeout must be > 0'):
            describe_items(data, FakeBackend(), cache, image_timeout=0)
