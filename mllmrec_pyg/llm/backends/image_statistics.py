r"""A stand-in for an MLLM when none is configured: simple visual statistics
of the image, written as text.  It is NOT a language model and its outputs
say so."""
from __future__ import annotations

import io
from typing import Any, Dict, List, Sequence, Tuple

from mllmrec_pyg.llm.backends.base import (
    BackendError,
    Generation,
    GenerationBackend,
    GenerationRequest,
    ResultCallback,
)

#: The named colours dominant pixels are snapped to (RGB).
PALETTE: Dict[str, Tuple[int, int, int]] = {
    'black': (0, 0, 0),
    'white': (255, 255, 255),
    'grey': (128, 128, 128),
    'red': (220, 30, 30),
    'orange': (245, 140, 20),
    'yellow': (245, 225, 40),
    'green': (40, 160, 60),
    'blue': (40, 80, 220),
    'purple': (130, 50, 170),
    'pink': (245, 150, 190),
    'brown': (120, 75, 35),
    'beige': (225, 205, 165),
}

#: The first words of every text this describer writes.
LABEL = 'Image statistics (not an MLLM description):'


def _nearest_colour(rgb: Tuple[int, int, int]) -> str:
    return min(PALETTE, key=lambda name: sum(
        (a - b)**2 for a, b in zip(rgb, PALETTE[name], strict=True)))


class ImageStatisticsDescriber(GenerationBackend):
    r"""Describes an image by its statistics: size, orientation, brightness
    and the share of its pixels nearest to each of the named colours of
    :obj:`PALETTE` (the :obj:`top_colours` largest).  The prompt is ignored.

    It is deterministic, costs no model, and is labelled in its output
    (:obj:`LABEL`) and in every artefact (:obj:`is_llm` is :obj:`False`):
    it stands in for Prompt1 when no vision-language model is available and
    must never be reported as an MLLM description.

    Args:
        top_colours (int, optional): Colours named in the text.
            (default: :obj:`3`)
        thumbnail (int, optional): Side of the thumbnail the colours are
            counted on. (default: :obj:`64`)
    """
    name = 'image-stats'
    supports_images = True
    is_llm = False

    def __init__(self, top_colours: int = 3, thumbnail: int = 64) -> None:
        super().__init__()
        self.top_colours = top_colours
        self.thumbnail = thumbnail
        self.model = 'image-statistics-v1'

    @property
    def generation_params(self) -> Dict[str, Any]:
        return {'top_colours': self.top_colours,
                'thumbnail': self.thumbnail}

    def describe(self, image: bytes) -> str:
        r"""Returns the text for the image file content :obj:`image`."""
        from PIL import Image

        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
            rgb = opened.convert('RGB')
        rgb.thumbnail((self.thumbnail, self.thumbnail))
        raw = rgb.tobytes()
        pixels: List[Tuple[int, int, int]] = [
            (raw[j], raw[j + 1], raw[j + 2]) for j in range(0, len(raw), 3)]
        counts: Dict[str, int] = {}
        for pixel in pixels:
            colour = _nearest_colour(pixel)
            counts[colour] = counts.get(colour, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        colours = ', '.join(f'{name} {100 * count / len(pixels):.0f}%'
                            for name, count in ranked[:self.top_colours])
        brightness = sum(sum(p) for p in pixels) / (3 * 255 * len(pixels))
        tone = ('dark' if brightness < 0.35 else
                'bright' if brightness > 0.7 else 'medium')
        orientation = ('square' if width == height else
                       'landscape' if width > height else 'portrait')
        return (f'{LABEL} a {orientation} {width}x{height} image, {tone} '
                f'overall (brightness {brightness:.2f}); dominant colours: '
                f'{colours}.')

    def generate_many(self, requests: Sequence[GenerationRequest],
                      on_result: ResultCallback) -> None:
        for index, request in enumerate(requests):
            try:
                if request.image is None:
                    raise BackendError('ImageStatisticsDescriber needs an '
                                       'image')
                on_result(index, Generation(self.describe(request.image)))
            except Exception as exc:
                on_result(index, exc)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(top_colours={self.top_colours}, '
                f'not_an_llm=True)')
