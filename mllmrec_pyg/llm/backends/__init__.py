r"""Generation backends behind one interface
(:class:`~mllmrec_pyg.llm.backends.base.GenerationBackend`), and
:func:`make_backend`, which builds one from its command-line name."""
from __future__ import annotations

from typing import Any, Dict, Optional

from .base import (
    BackendError,
    Generation,
    GenerationBackend,
    GenerationOutcome,
    GenerationRequest,
    ResultCallback,
)
from .decoding import DECODINGS, SERVER_DECODING, TRANSFORMERS_DECODING
from .huggingface import HuggingFaceBackend
from .image_statistics import ImageStatisticsDescriber
from .openai_http import OpenAIHTTPBackend, ServerUnreachableError
from .smollm2 import SMOLLM2_GGUF, SmolLM2Backend, smollm2_gguf_path

#: Command-line names of the backends.
BACKENDS = ('smollm2', 'openai', 'hf', 'image-stats')


def make_backend(name: str, model: Optional[str] = None,
                 base_url: Optional[str] = None,
                 **kwargs: Any) -> GenerationBackend:
    r"""Builds the backend called :obj:`name` (one of :obj:`BACKENDS`).

    Args:
        name (str): :obj:`"smollm2"` (offline default), :obj:`"openai"`
            (any OpenAI-compatible server), :obj:`"hf"` (a local
            :obj:`transformers` model) or :obj:`"image-stats"` (the non-LLM
            image fallback).
        model (str, optional): The served model name (:obj:`"openai"`) or
            the model folder / Hub id (:obj:`"hf"`). (default: :obj:`None`)
        base_url (str, optional): The server's API root (:obj:`"openai"`).
            (default: :obj:`None`)
        **kwargs: Further arguments of the backend's class (e.g.
            :obj:`decoding="legacy"` for the text backends, see
            :mod:`~mllmrec_pyg.llm.backends.decoding`).
    """
    options: Dict[str, Any] = {k: v for k, v in kwargs.items()
                               if v is not None}
    if name == 'smollm2':
        return SmolLM2Backend(**options)
    if name == 'openai':
        return OpenAIHTTPBackend(base_url=base_url, model=model, **options)
    if name == 'hf':
        if not model:
            raise ValueError("The 'hf' backend needs --model (a local folder "
                             'or a Hugging Face model id)')
        return HuggingFaceBackend(model, **options)
    if name == 'image-stats':
        return ImageStatisticsDescriber(**options)
    raise ValueError(f"Unknown backend '{name}' (expected one of "
                     f"{', '.join(BACKENDS)})")


__all__ = [
    'BACKENDS',
    'BackendError',
    'DECODINGS',
    'Generation',
    'GenerationBackend',
    'GenerationOutcome',
    'GenerationRequest',
    'HuggingFaceBackend',
    'ImageStatisticsDescriber',
    'OpenAIHTTPBackend',
    'ResultCallback',
    'SERVER_DECODING',
    'SMOLLM2_GGUF',
    'ServerUnreachableError',
    'SmolLM2Backend',
    'TRANSFORMERS_DECODING',
    'make_backend',
    'smollm2_gguf_path',
]
