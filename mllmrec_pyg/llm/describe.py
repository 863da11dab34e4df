r"""Semantic descriptions of item images,

.. math::
    D_s^i = \mathrm{MLLM}(\mathrm{Prompt1}, D_v^i),

with the dataset's domain in Prompt1.  Items whose image is absent,
missing, unreadable, unreachable, too slow to download, too large or of too
many pixels are *skipped* with the reason recorded; they never stop the
run.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from torch_geometric.data import HeteroData

from mllmrec_pyg.llm.backends.base import GenerationBackend, GenerationRequest
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.outputs import write_json, write_tsv
from mllmrec_pyg.llm.prompts import DescriptionPrompt
from mllmrec_pyg.llm.redact import redact_secrets
from mllmrec_pyg.llm.runner import RunResult, run_requests, run_summary


class ImageUnavailable(Exception):
    r"""An item's image cannot be read (absent, missing file, corrupt,
    unreachable URL); the item is skipped with this reason."""


#: Default cap of one image's size, in MB (:obj:`2**20` bytes each).
DEFAULT_MAX_IMAGE_MB = 20.0

_MB = 1 << 20

# PIL's own default limit, used when PIL.Image.MAX_IMAGE_PIXELS was
# switched off (None): decoding always stays bounded.
_DEFAULT_MAX_PIXELS = 89_478_485


def _mb(size: float) -> str:
    if size < _MB / 10:
        return f'{int(size)} bytes'
    return f'{size / _MB:.3g} MB'


def _too_big(location: str, size: str, max_bytes: int) -> ImageUnavailable:
    return ImageUnavailable(f'image {location} is {size}, over the '
                            f'--max-image-mb cap of {_mb(max_bytes)}')


def _run_coroutine(coroutine: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from a running event loop (e.g. a notebook): a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    import httpx

    async def fetch() -> bytes:
        # No transfer compression: the cap counts the bytes of the image.
        async with httpx.AsyncClient(
                timeout=timeout, follow_redirects=True,
                headers={'Accept-Encoding': 'identity'}) as client:
            async with client.stream('GET', url) as response:
                response.raise_for_status()
                declared = response.headers.get('content-length', '')
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_big(url, _mb(int(declared)), max_bytes)
                chunks: List[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_big(url, f'more than {_mb(max_bytes)}',
                                       max_bytes)
                    chunks.append(chunk)
                return b''.join(chunks)

    async def bounded() -> bytes:
        # One deadline for the whole download, however the bytes trickle.
        return await asyncio.wait_for(fetch(), timeout)

    try:
        return _run_coroutine(bounded())
    except asyncio.TimeoutError:
        raise ImageUnavailable(
            f'image URL {url} took longer than {timeout:g} s to download '
            '(--image-timeout)') from None
    except httpx.HTTPError as exc:
        raise ImageUnavailable(f'unreachable URL {url} '
                               f'({type(exc).__name__}: {exc})') from None


def load_image_bytes(location: Optional[str], timeout: float = 20.0,
                     max_bytes: int = int(DEFAULT_MAX_IMAGE_MB * _MB)
                     ) -> bytes:
    r"""Returns the bytes of the image at :obj:`location` (a file path or an
    :obj:`http(s)://` URL), checked to be a decodable image.

    Reading is bounded three ways: :obj:`timeout` limits the *whole*
    download of a URL (a server trickling bytes cannot hold the run), an
    image over :obj:`max_bytes` is refused without being read whole, and
    an image of more pixels than :obj:`PIL.Image.MAX_IMAGE_PIXELS` (PIL's
    decompression-bomb limit, about 89 million; kept on even when it was
    switched off) is refused without being decoded.

    Args:
        location (str, optional): A file path or an :obj:`http(s)://` URL.
        timeout (float, optional): Seconds the whole download of a URL may
            take. (default: :obj:`20.0`)
        max_bytes (int, optional): Largest image in bytes.
            (default: :obj:`20 * 2**20`, 20 MB)

    Raises:
        ImageUnavailable: With the reason, when there is no usable image.
    """
    if not location:
        raise ImageUnavailable('no image')
    if location.startswith(('http://', 'https://')):
        content = _download(location, timeout, max_bytes)
    else:
        if not os.path.exists(location):
            raise ImageUnavailable(f'missing file {location}')
        try:
            size = os.path.getsize(location)
            if size > max_bytes:
                raise _too_big(location, _mb(size), max_bytes)
            with open(location, 'rb') as f:
                content = f.read(max_bytes + 1)
        except OSError as exc:
            raise ImageUnavailable(f'unreadable file {location} '
                                   f'({type(exc).__name__}: {exc})') from None
        if len(content) > max_bytes:  # it grew since
            raise _too_big(location, f'more than {_mb(max_bytes)}', max_bytes)
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or _DEFAULT_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Refused below with the item named, not warned about.
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
        with image:
            width, height = image.size
            if width * height > limit:
                raise ImageUnavailable(
                    f'image {location} is {width}x{height} pixels, over the '
                    f'decoding limit of {limit} pixels '
                    '(PIL.Image.MAX_IMAGE_PIXELS)')
            image.load()
    except ImageUnavailable:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageUnavailable(f'image {location} is too large to decode '
                               f'({exc})') from None
    except Exception as exc:
        raise ImageUnavailable(f'unreadable image {location} '
                               f'({type(exc).__name__}: {exc})') from exc
    return content


@dataclass
class DescribeRun:
    r"""The image descriptions of a run, with its counters."""
    result: RunResult
    backend: GenerationBackend
    prompt: str
    items: List[int]
    skipped: Dict[int, str]
    seconds: float
    extra: Dict[str, Any] = field(default_factory=dict)

    def descriptions(self) -> Dict[int, str]:
        r"""Returns :math:`D_s^i` per item index (skipped and failed items
        are absent)."""
        return {int(i): t for i, t in self.result.texts.items()}

    def summary(self, data: HeteroData) -> Dict[str, Any]:
        r"""Returns the :obj:`summary.json` content: the keys every stage
        shares (:func:`~mllmrec_pyg.llm.runner.run_summary`), then the
        prompt, the items and the skipped ones."""
        raw = data['item'].raw_id
        return {
            **run_summary(data, self.backend, self.result, self.seconds),
            'note': (None if self.backend.is_llm else
                     'NOT an MLLM: descriptions are image statistics written '
                     'as text (no vision-language model was used)'),
            'prompt': self.prompt,
            'items': len(self.items),
            'descriptions': len(self.result.texts),
            'failed_items': {raw[int(i)]: error for i, error in
                             self.result.failures.items()},
            'skipped': len(self.skipped),
            'skipped_items': {raw[i]: reason
                              for i, reason in self.skipped.items()},
            **self.extra,
        }

    def write(self, data: HeteroData, out: str) -> None:
        r"""Writes :obj:`out/descriptions.tsv` (:obj:`item`,
        :obj:`description`) and :obj:`out/summary.json`, with ids as in the
        dataset's files."""
        os.makedirs(out, exist_ok=True)
        raw = data['item'].raw_id
        texts = self.descriptions()
        write_tsv(os.path.join(out, 'descriptions.tsv'),
                  ['item', 'description'],
                  ([raw[i], texts[i]] for i in self.items if i in texts))
        write_json(os.path.join(out, 'summary.json'), self.summary(data))


def describe_items(
    data: HeteroData,
    backend: GenerationBackend,
    cache: GenerationCache,
    template: DescriptionPrompt = DescriptionPrompt(),
    items: Optional[Sequence[int]] = None,
    progress: bool = True,
    image_timeout: float = 20.0,
    max_image_mb: float = DEFAULT_MAX_IMAGE_MB,
) -> DescribeRun:
    r"""Describes the image of each item with :obj:`backend` through
    :obj:`cache` (finished items cost no call; each new description is
    committed as it arrives).

    Args:
        data (HeteroData): The dataset; :obj:`data['item'].image` holds a
            path, a URL or :obj:`None` per item.
        backend (GenerationBackend): A backend that reads images.
        cache (GenerationCache): The generation cache.
        template (DescriptionPrompt, optional): Prompt1.
        items (Sequence[int], optional): Item indices. (default: all)
        progress (bool, optional): Show a progress bar.
            (default: :obj:`True`)
        image_timeout (float, optional): Seconds the whole download of one
            image URL may take. (default: :obj:`20.0`)
        max_image_mb (float, optional): Largest image in MB (:obj:`2**20`
            bytes); larger ones are skipped. (default: :obj:`20.0`)

    Raises:
        ValueError: If :obj:`backend` cannot read images, or
            :obj:`image_timeout` or :obj:`max_image_mb` is not positive.
    """
    if not image_timeout > 0:
        raise ValueError(f'image_timeout must be > 0 (got {image_timeout})')
    if not max_image_mb > 0:
        raise ValueError(f'max_image_mb must be > 0 (got {max_image_mb})')
    max_bytes = int(max_image_mb * _MB)
    if not backend.supports_images:
        raise ValueError(
            f"The '{backend.name}' backend ({backend.model}) cannot read "
            'images: use --backend hf --model <a vision-language model>, '
            '--backend openai with a vision model, or --backend image-stats '
            '(a labelled non-LLM fallback)')
    started = time.perf_counter()
    locations: Sequence[Optional[str]] = getattr(data['item'], 'image',
                                                 None) or []
    num_items = int(data['item'].num_nodes)
    items = list(range(num_items)) if items is None else list(items)
    prompt = template.format(str(getattr(data, 'domain', '') or ''))
    jobs = []
    skipped: Dict[int, str] = {}
    for i in items:
        location = locations[i] if i < len(locations) else None
        try:
            image = load_image_bytes(location, timeout=image_timeout,
                                     max_bytes=max_bytes)
        except ImageUnavailable as exc:
            skipped[i] = redact_secrets(str(exc))
            continue
        jobs.append((str(i), GenerationRequest(prompt, image=image)))
    label = 'descriptions' + ('' if backend.is_llm else ' [NOT AN MLLM]')
    result = run_requests(backend, cache, 'describe', jobs, progress=progress,
                          description=label)
    return DescribeRun(result=result, backend=backend, prompt=prompt,
                       items=items, skipped=skipped,
                       seconds=time.perf_counter() - started)
