r"""A scripted in-memory backend for runner tests."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from mllmrec_pyg.llm.backends.base import (
    BackendError,
    Generation,
    GenerationBackend,
    GenerationRequest,
)


class FakeBackend(GenerationBackend):
    r"""Answers ``'pref: ' + prompt[-12:]``; fails prompts containing a
    word of :obj:`fail_on`; answers only whitespace to a
    word of :obj:`empty_on`; raises :class:`KeyboardInterrupt` after
    :obj:`interrupt_after` answers (like Ctrl-C mid-run).  :obj:`answer`,
    when given, maps a prompt to the answer's text instead, and
    :obj:`finish_reason` is reported with every answer.  Every request is
    kept in :obj:`requests`."""
    name = 'fake'
    supports_images = True

    def __init__(self, fail_on: List[str] = (),  # type: ignore
                 interrupt_after: Optional[int] = None,
                 empty_on: List[str] = (),  # type: ignore
                 answer: Optional[Callable[[str], str]] = None,
                 finish_reason: Optional[str] = None) -> None:
        super().__init__()
        self.answer = answer or (lambda prompt: f'pref: {prompt[-12:]}')
        self.finish_reason = finish_reason
        self.requests: List[GenerationRequest] = []
        self.model = 'fake-1'
        self.fail_on = list(fail_on)
        self.empty_on = list(empty_on)
        self.interrupt_after = interrupt_after
        self.calls = 0
        self.prompts: List[str] = []

    @property
    def generation_params(self) -> Dict[str, int]:
        return {'seed': 0}

    def generate_many(self, requests, on_result):
        for index, request in enumerate(requests):
            if self.interrupt_after is not None and \
                    self.calls >= self.interrupt_after:
                raise KeyboardInterrupt
            self.calls += 1
            self.prompts.append(request.prompt)
            self.requests.append(request)
            if any(word in request.prompt for word in self.fail_on):
                on_result(index, BackendError('scripted failure'))
            elif any(word in request.prompt for word in self.empty_on):
                on_result(index, Generation(' \n', completion_tokens=1))
            else:
                on_result(index, Generation(self.answer(request.prompt),
                                            completion_tokens=4,
                                            finish_reason=self.finish_reason))
