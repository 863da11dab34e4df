r"""The one interface every generation backend implements.

A backend turns :class:`GenerationRequest` objects (a prompt, optionally an
image) into :class:`Generation` objects.  The runners
(:mod:`mllmrec_pyg.llm.describe`, :mod:`mllmrec_pyg.llm.prefer`) never know
which backend they drive: they call :meth:`GenerationBackend.generate_many`,
which reports every finished request through a callback *as it finishes*, so
the runner can commit it to the cache before the next one completes.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Union


@dataclass(frozen=True)
class GenerationRequest:
    r"""One prompt to complete.

    Args:
        prompt (str): The full user prompt (already filled; see
            :mod:`mllmrec_pyg.llm.prompts`).
        image (bytes, optional): The raw bytes of an image file (PNG, JPEG,
            ...) to show the model with the prompt. (default: :obj:`None`)
        system (str, optional): A system message sent before the prompt
            (part of the cache key when given; :obj:`None` sends none, and
            the model's chat template may then add its own default).
            (default: :obj:`None`)
    """
    prompt: str
    image: Optional[bytes] = None
    system: Optional[str] = None

    def image_digest(self) -> str:
        r"""Returns the SHA-256 hex digest of :obj:`image` (:obj:`''` when
        there is no image): this is what enters the cache key."""
        if self.image is None:
            return ''
        return hashlib.sha256(self.image).hexdigest()


@dataclass(frozen=True)
class Generation:
    r"""A finished completion.

    Args:
        text (str): The generated text, stripped of surrounding whitespace.
        prompt_tokens (int, optional): Tokens the model read, where the
            backend knows it. (default: :obj:`None`)
        completion_tokens (int, optional): Tokens the model wrote, where the
            backend knows it. (default: :obj:`None`)
        finish_reason (str, optional): Why the generation ended, where the
            backend says: :obj:`"stop"` (end of text or a stop sequence) or
            :obj:`"length"` (the token cap). (default: :obj:`None`)
    """
    text: str
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    finish_reason: Optional[str] = None


#: What :meth:`GenerationBackend.generate_many` hands the callback for one
#: request: the :class:`Generation`, or the exception that ended it.
GenerationOutcome = Union[Generation, BaseException]
ResultCallback = Callable[[int, GenerationOutcome], None]


class BackendError(RuntimeError):
    r"""A request failed for a reason that retrying inside the backend did not
    fix (the runner records it per item/user and retries it on the next
    run)."""


class GenerationBackend(ABC):
    r"""Base class of the generation backends.

    Subclasses set :attr:`name` (the command-line name, e.g.
    :obj:`"openai"`), :attr:`model` (what identifies the weights: a model id,
    a revision, a content digest), :attr:`supports_images` and
    :attr:`is_llm`, and implement :meth:`generate_many`.

    The cache key of a request is built from :meth:`identity` (backend name,
    model and generation parameters), the full prompt and the image bytes,
    so two backends, two models or two parameter settings never share an
    entry.  Secrets (API keys) are never part of :meth:`identity`,
    :meth:`__repr__` or anything written to disk.
    """
    #: Command-line name of the backend.
    name: str = 'base'
    #: Whether the backend can read an image with the prompt.
    supports_images: bool = False
    #: :obj:`False` for stand-ins that are not language models (e.g.
    #: :class:`~mllmrec_pyg.llm.backends.ImageStatisticsDescriber`): their
    #: output is labelled as such in every artefact.
    is_llm: bool = True

    def __init__(self) -> None:
        self.model: str = ''

    @property
    def generation_params(self) -> Dict[str, Any]:
        r"""The parameters that change what is generated (max new tokens,
        temperature, seed, ...).  JSON-serialisable; part of the cache
        key."""
        return {}

    def identity(self) -> Dict[str, Any]:
        r"""Returns :obj:`{"backend": ..., "model": ..., "params": ...}`,
        the backend's part of every cache key."""
        return {'backend': self.name, 'model': self.model,
                'params': self.generation_params}

    @abstractmethod
    def generate_many(self, requests: Sequence[GenerationRequest],
                      on_result: ResultCallback) -> None:
        r"""Completes every request of :obj:`requests`.

        :obj:`on_result(index, outcome)` is called once per request, in
        completion order, from the calling thread, as soon as the request
        finishes: :obj:`outcome` is a :class:`Generation`, or the exception
        that ended the request after the backend's own retries.  One failed
        request never stops the others; :class:`KeyboardInterrupt` does, and
        requests already reported stay reported.
        """

    def generate(self, request: GenerationRequest) -> Generation:
        r"""Completes one request; raises its exception if it failed."""
        outcomes: Dict[int, GenerationOutcome] = {}
        self.generate_many([request], outcomes.__setitem__)
        outcome = outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:  # noqa: B027 (optional hook)
        r"""Releases what the backend holds (HTTP connections, ...)."""

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(model={self.model!r})'
