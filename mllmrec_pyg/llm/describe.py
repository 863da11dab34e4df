r"""Semantic descriptions of item images,

.. math::
    D_s^i = \mathrm{MLLM}(\mathrm{Prompt1}, D_v^i),

with the dataset's domain in Prompt1.  Items whose image is absent,
missing, unreadable or unreachable are *skipped* with the reason recorded;
they never stop the run.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from torch_geometric.data import HeteroData

from mllmrec_pyg.llm.backends.base import GenerationBackend, GenerationRequest
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.outputs import write_json, write_tsv
from mllmrec_pyg.llm.prompts import DescriptionPrompt
from mllmrec_pyg.llm.runner import RunResult, run_requests, run_summary


class ImageUnavailable(Exception):
    r"""An item's image cannot be read (absent, missing file, corrupt,
    unreachable URL); the item is skipped with this reason."""


def load_image_bytes(location: Optional[str], timeout: float = 20.0) -> bytes:
    r"""Returns the bytes of the image at :obj:`location` (a file path or an
    :obj:`http(s)://` URL), checked to be a decodable image.

    Raises:
        ImageUnavailable: With the reason, when there is no usable image.
    """
    if not location:
        raise ImageUnavailable('no image')
    if location.startswith(('http://', 'https://')):
        import httpx

        try:
            response = httpx.get(location, timeout=timeout,
                                 follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ImageUnavailable(f'unreachable URL {location} '
                                   f'({type(exc).__name__}: {exc})') from exc
        content = response.content
    else:
        if not os.path.exists(location):
            raise ImageUnavailable(f'missing file {location}')
        with open(location, 'rb') as f:
            content = f.read()
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()
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
        image_timeout (float, optional): Seconds to fetch one image URL.
            (default: :obj:`20.0`)

    Raises:
        ValueError: If :obj:`backend` cannot read images.
    """
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
            image = load_image_bytes(location, timeout=image_timeout)
        except ImageUnavailable as exc:
            skipped[i] = str(exc)
            continue
        jobs.append((str(i), GenerationRequest(prompt, image=image)))
    label = 'descriptions' + ('' if backend.is_llm else ' [NOT AN MLLM]')
    result = run_requests(backend, cache, 'describe', jobs, progress=progress,
                          description=label)
    return DescribeRun(result=result, backend=backend, prompt=prompt,
                       items=items, skipped=skipped,
                       seconds=time.perf_counter() - started)
