r"""Local Hugging Face :obj:`transformers` models: text LLMs
(:obj:`AutoModelForCausalLM`) and vision-language models
(:obj:`AutoProcessor` + :obj:`AutoModelForImageTextToText`)."""
from __future__ import annotations

import functools
import hashlib
import io
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mllmrec_pyg.llm.backends.base import (
    BackendError,
    Generation,
    GenerationBackend,
    GenerationRequest,
    ResultCallback,
)
from mllmrec_pyg.llm.backends.decoding import TRANSFORMERS_DECODING, preset


def fingerprint_path(path: str, sample_bytes: int = 1 << 20) -> str:
    r"""Returns a content digest of a model file or folder: every file's
    relative name, size and first and last :obj:`sample_bytes` bytes (enough
    to tell weights apart without reading gigabytes)."""
    digest = hashlib.sha256()
    files: List[str] = []
    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            files.extend(os.path.join(root, name) for name in names)
        files.sort()
    else:
        files = [path]
    for file in files:
        size = os.path.getsize(file)
        digest.update(os.path.relpath(file, path).encode() if file != path
                      else os.path.basename(file).encode())
        digest.update(str(size).encode())
        with open(file, 'rb') as f:
            digest.update(f.read(sample_bytes))
            if size > sample_bytes:
                f.seek(max(size - sample_bytes, sample_bytes))
                digest.update(f.read(sample_bytes))
    return digest.hexdigest()


def cut_at_stop(text: str, stop: Sequence[str]) -> Tuple[str, bool]:
    r"""Returns :obj:`text` up to the first occurrence of any of
    :obj:`stop` (the stop sequence left out, as OpenAI-compatible servers
    do), and whether one occurred.

    Args:
        text (str): A decoded generation.
        stop (Sequence[str]): The stop sequences.
    """
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not found:
        return text, False
    return text[:min(found)], True


def _output_penalty(frequency: float, presence: float) -> Any:
    r"""A :obj:`transformers` logits processor with the frequency and
    presence penalties of OpenAI-compatible servers: each token's logit is
    lowered by :obj:`frequency` per earlier occurrence *in the output* and
    by :obj:`presence` once it occurred there.

    .. math::
        \ell_t \leftarrow \ell_t - \alpha_f\, c_t - \alpha_p\,
        [c_t > 0]

    with :math:`c_t` the count of token :math:`t` among the tokens
    generated so far.  Unlike :obj:`repetition_penalty`, the prompt does not
    count: a preference may use the words of the item descriptions it
    summarises."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class OutputPenalty(LogitsProcessor):
        def __init__(self) -> None:
            self.start: Optional[int] = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            # First call: nothing generated yet (input_ids is the prompt).
            if self.start is None:
                self.start = input_ids.size(1)
            new = input_ids[:, self.start:]
            if new.size(1) == 0:
                return scores
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, new, torch.ones_like(new, dtype=scores.dtype))
            return scores - frequency * counts - presence * (counts > 0).to(
                scores.dtype)

    return LogitsProcessorList([OutputPenalty()])


def _stop_criteria(tokenizer: Any, stop: Sequence[str]) -> Any:
    r"""A :obj:`transformers` stopping criterion that ends each sequence
    once its decoded new text holds one of :obj:`stop`.

    (:obj:`generate(stop_strings=...)` needs a tokenizer whose vocabulary it
    can map back to strings, which word-level tokenizers are not; decoding
    the new tokens works with any.)"""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        def __init__(self) -> None:
            self.start: Optional[int] = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            # First call: one new token after the prompt (whether or not
            # the model echoes its prompt in input_ids).
            if self.start is None:
                self.start = input_ids.size(1) - 1
            done = [any(s in tokenizer.decode(row[self.start:],
                                              skip_special_tokens=True)
                        for s in stop) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool,
                                device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()])


def _is_vision_model(model: str, gguf_file: Optional[str],
                     revision: Optional[str]) -> bool:
    if gguf_file is not None:
        return False
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )
    config = AutoConfig.from_pretrained(model, revision=revision)
    return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


@functools.lru_cache(maxsize=4)
def _load(model: str, gguf_file: Optional[str], revision: Optional[str],
          vision: bool, device: str) -> Tuple[Any, Any]:
    # One load per process: tests and repeated CLI runs in one process share
    # the weights (loading dominates the cost of small runs).
    import transformers

    kwargs: Dict[str, Any] = {'revision': revision}
    if gguf_file is not None:
        kwargs['gguf_file'] = gguf_file
    if device == 'auto':
        kwargs['device_map'] = 'auto'
    if vision:
        processor = transformers.AutoProcessor.from_pretrained(model,
                                                               **kwargs)
        network = transformers.AutoModelForImageTextToText.from_pretrained(
            model, **kwargs)
    else:
        processor = transformers.AutoTokenizer.from_pretrained(model,
                                                               **kwargs)
        network = transformers.AutoModelForCausalLM.from_pretrained(
            model, **kwargs)
    if device not in ('auto', 'cpu'):
        network = network.to(device)  # type: ignore[arg-type]
    network.eval()
    return processor, network


class HuggingFaceBackend(GenerationBackend):
    r"""Completions from a local :obj:`transformers` model.

    Text models are prompted through their chat template (when they have
    one); vision-language models (any :obj:`model_type` that
    :obj:`AutoModelForImageTextToText` knows, e.g. LLaVA, Idefics, SmolVLM,
    Qwen2-VL, BLIP) get the image through their :obj:`AutoProcessor`.
    Decoding is greedy by default with a fixed seed, so the same prompt gives
    the same text, with the repetition control of the :obj:`decoding` preset
    (:mod:`~mllmrec_pyg.llm.backends.decoding`): by default
    (:obj:`"guarded"`) a mild repetition penalty (1.05), frequency and
    presence penalties of 0.3 on the generated tokens, no token 4-gram
    twice, and a stop at the first blank line (the end of the paragraph);
    :obj:`"legacy"` turns them all off, as in earlier versions.  A
    request's system message is sent through the chat template (or put
    before the prompt, separated by a blank line, for models without one).

    Args:
        model (str): A local folder or a Hub model id.
        gguf_file (str, optional): A GGUF file inside :obj:`model` to load
            (de-quantised by :obj:`transformers`; needs :obj:`gguf`).
            (default: :obj:`None`)
        revision (str, optional): The Hub revision. (default: :obj:`None`)
        vision (bool, optional): Force (or forbid) the vision path; detected
            from the model's configuration when :obj:`None`.
            (default: :obj:`None`)
        max_new_tokens (int, optional): Most tokens to generate.
            (default: :obj:`160`)
        do_sample (bool, optional): Sample instead of greedy decoding.
            (default: :obj:`False`)
        temperature (float, optional): Sampling temperature (with
            :obj:`do_sample`). (default: :obj:`1.0`)
        seed (int, optional): Seed set before every generation.
            (default: :obj:`0`)
        batch_size (int, optional): Text prompts generated together
            (left-padded). (default: :obj:`1`)
        device (str, optional): :obj:`"cpu"`, :obj:`"cuda"`, or
            :obj:`"auto"` (:obj:`accelerate` places the weights); :obj:`None`
            picks :obj:`"auto"` when a GPU is present, else :obj:`"cpu"`.
            (default: :obj:`None`)
        num_threads (int, optional): CPU threads for :obj:`torch` while
            generating; the previous setting is restored afterwards
            (:obj:`None` leaves it alone). (default: :obj:`None`)
        model_name (str, optional): The name recorded in outputs and cache
            keys; defaults to :obj:`model` plus a content fingerprint for
            local paths. (default: :obj:`None`)
        decoding (str, optional): The preset of the five settings below,
            :obj:`"guarded"` or :obj:`"legacy"`. (default: :obj:`"guarded"`)
        repetition_penalty (float, optional): :obj:`transformers`'
            multiplicative penalty on the logits of tokens already in the
            prompt or the output; :obj:`1.0` is off.
            (default: the preset's, :obj:`1.05` / :obj:`1.0`)
        no_repeat_ngram_size (int, optional): No token :math:`n`-gram of
            this size occurs twice in prompt and output; :obj:`0` is off.
            (default: the preset's, :obj:`4` / :obj:`0`)
        frequency_penalty (float, optional): Lowers a token's logit by this
            much per occurrence among the generated tokens (as OpenAI's).
            (default: the preset's, :obj:`0.3` / :obj:`0.0`)
        presence_penalty (float, optional): Lowers a token's logit by this
            much once it was generated. (default: the preset's, :obj:`0.3` /
            :obj:`0.0`)
        stop (Sequence[str], optional): Generation ends at the first of
            these strings, which is left out of the text.
            (default: the preset's, :obj:`("\n\n",)` / :obj:`()`)
    """
    name = 'hf'

    def __init__(self, model: str, gguf_file: Optional[str] = None,
                 revision: Optional[str] = None,
                 vision: Optional[bool] = None, max_new_tokens: int = 160,
                 do_sample: bool = False, temperature: float = 1.0,
                 seed: int = 0, batch_size: int = 1,
                 device: Optional[str] = None,
                 num_threads: Optional[int] = None,
                 model_name: Optional[str] = None,
                 decoding: str = 'guarded',
                 repetition_penalty: Optional[float] = None,
                 no_repeat_ngram_size: Optional[int] = None,
                 frequency_penalty: Optional[float] = None,
                 presence_penalty: Optional[float] = None,
                 stop: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        settings = preset(TRANSFORMERS_DECODING, decoding,
                          repetition_penalty=repetition_penalty,
                          no_repeat_ngram_size=no_repeat_ngram_size,
                          frequency_penalty=frequency_penalty,
                          presence_penalty=presence_penalty, stop=stop)
        if settings['repetition_penalty'] <= 0:
            raise ValueError('repetition_penalty must be > 0 (1.0 is off; '
                             f"got {settings['repetition_penalty']})")
        if settings['no_repeat_ngram_size'] < 0:
            raise ValueError('no_repeat_ngram_size must be >= 0 (0 is off; '
                             f"got {settings['no_repeat_ngram_size']})")
        if os.path.sep in model or os.path.exists(model):
            if not os.path.exists(model):
                raise FileNotFoundError(f"Model folder '{model}' does not "
                                        'exist (pass a local folder or a Hub '
                                        'model id to --model)')
        if gguf_file is not None and not os.path.exists(
                os.path.join(model, gguf_file)):
            raise FileNotFoundError(f"GGUF file '{gguf_file}' not found in "
                                    f"'{model}'")
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1 (got {batch_size})')
        self.path = model
        self.gguf_file = gguf_file
        self.revision = revision
        self.max_new_tokens = max_new_tokens
        self.do_sample = do_sample
        self.temperature = temperature
        self.seed = seed
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.decoding = decoding
        self.repetition_penalty = float(settings['repetition_penalty'])
        self.no_repeat_ngram_size = int(settings['no_repeat_ngram_size'])
        self.frequency_penalty = float(settings['frequency_penalty'])
        self.presence_penalty = float(settings['presence_penalty'])
        self.stop: Tuple[str, ...] = settings['stop']
        if device is None:
            import torch
            device = 'auto' if torch.cuda.is_available() else 'cpu'
        self.device = device
        self.vision = (_is_vision_model(model, gguf_file, revision)
                       if vision is None else vision)
        self.supports_images = self.vision
        if model_name is None:
            if os.path.exists(model):
                target = (os.path.join(model, gguf_file) if gguf_file
                          else model)
                model_name = (f'{os.path.basename(os.path.normpath(target))}'
                              f'@sha256:{fingerprint_path(target)[:16]}')
            else:
                model_name = f'{model}@{revision or "main"}'
        self.model = model_name

    @property
    def generation_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {'max_new_tokens': self.max_new_tokens,
                                  'do_sample': self.do_sample,
                                  'seed': self.seed}
        if self.do_sample:
            params['temperature'] = self.temperature
        # Batching (left padding) and the device change greedy outputs in
        # the last digits, so they are part of the key; the defaults (one
        # prompt at a time, CPU) are left out to keep existing keys valid.
        if self.batch_size != 1:
            params['batch_size'] = self.batch_size
        if self.device != 'cpu':
            params['device'] = self.device
        # Repetition control and stops, where on; the legacy values (all
        # off) are left out, so legacy keys are those of earlier versions.
        if self.repetition_penalty != 1.0:
            params['repetition_penalty'] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            params['no_repeat_ngram_size'] = self.no_repeat_ngram_size
        if self.frequency_penalty:
            params['frequency_penalty'] = self.frequency_penalty
        if self.presence_penalty:
            params['presence_penalty'] = self.presence_penalty
        if self.stop:
            params['stop'] = list(self.stop)
        return params

    def load(self) -> Tuple[Any, Any]:
        r"""Returns :obj:`(tokenizer or processor, model)`, loading them once
        per process."""
        return _load(self.path, self.gguf_file, self.revision, self.vision,
                     self.device)

    def _generate_kwargs(self, tokenizer: Any) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = {'max_new_tokens': self.max_new_tokens,
                                  'do_sample': self.do_sample}
        if self.do_sample:
            kwargs['temperature'] = self.temperature
        else:
            # Greedy: unset sampling knobs a model's generation_config may
            # carry, which would otherwise warn.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        pad = getattr(tokenizer, 'pad_token_id', None)
        eos = getattr(tokenizer, 'eos_token_id', None)
        if pad is None and eos is not None:
            kwargs['pad_token_id'] = eos
        if self.repetition_penalty != 1.0:
            kwargs['repetition_penalty'] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            kwargs['no_repeat_ngram_size'] = self.no_repeat_ngram_size
        if self.frequency_penalty or self.presence_penalty:
            kwargs['logits_processor'] = _output_penalty(
                self.frequency_penalty, self.presence_penalty)
        if self.stop:
            kwargs['stopping_criteria'] = _stop_criteria(tokenizer, self.stop)
        return kwargs

    def _finish(self, tokenizer: Any, text: str, tokens: List[int],
                count: int) -> Tuple[str, str]:
        # "length" when the cap ended it: as many tokens as allowed, no
        # end-of-text token and no stop string among them.
        text, stopped = cut_at_stop(text, self.stop)
        eos = getattr(tokenizer, 'eos_token_id', None)
        ended = eos is not None and eos in tokens
        capped = count >= self.max_new_tokens and not (stopped or ended)
        return text.strip(), 'length' if capped else 'stop'

    def _chat_text(self, template_owner: Any, request: GenerationRequest,
                   image: bool) -> str:
        if not getattr(template_owner, 'chat_template', None):
            if request.system:
                return f'{request.system}\n\n{request.prompt}'
            return request.prompt
        content: Any = request.prompt
        if image:
            content = [{'type': 'image'},
                       {'type': 'text', 'text': request.prompt}]
        messages = [{'role': 'user', 'content': content}]
        if request.system:
            messages.insert(0, {'role': 'system', 'content': request.system})
        return template_owner.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)

    def _text_batch(self, batch: Sequence[GenerationRequest]
                    ) -> List[Generation]:
        import torch

        tokenizer, network = self.load()
        texts = [self._chat_text(tokenizer, request, image=False)
                 for request in batch]
        tokenizer.padding_side = 'left'
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        inputs = tokenizer(texts, return_tensors='pt', padding=True,
                           add_special_tokens=False).to(network.device)
        torch.manual_seed(self.seed)
        with torch.inference_mode():
            output = network.generate(**inputs,
                                      **self._generate_kwargs(tokenizer))
        new = output[:, inputs['input_ids'].size(1):]
        results = []
        for row, mask in zip(new, inputs['attention_mask'], strict=True):
            count = int((row != tokenizer.pad_token_id).sum())
            text, finish = self._finish(
                tokenizer, tokenizer.decode(row, skip_special_tokens=True),
                row.tolist(), count)
            results.append(Generation(text=text,
                                      prompt_tokens=int(mask.sum()),
                                      completion_tokens=count,
                                      finish_reason=finish))
        return results

    def _vision_one(self, request: GenerationRequest) -> Generation:
        import torch
        from PIL import Image

        processor, network = self.load()
        inputs: Any
        if request.image is None:
            raise BackendError('The vision backend needs an image')
        image = Image.open(io.BytesIO(request.image)).convert('RGB')
        chat = self._chat_text(processor, request, image=True)
        inputs = processor(images=[image], text=chat,
                           return_tensors='pt').to(network.device)
        tokenizer = getattr(processor, 'tokenizer', processor)
        torch.manual_seed(self.seed)
        with torch.inference_mode():
            output = network.generate(**inputs, return_dict_in_generate=True,
                                      output_scores=True,
                                      **self._generate_kwargs(tokenizer))
        # One score per generation step: the new tokens are the last ones,
        # whether the model echoes its prompt (decoder-only, BLIP) or not.
        steps = len(output.scores)
        row = output.sequences[0]
        row = row[row.size(0) - steps:]
        prompt_ids = inputs.get('input_ids')
        prompt_tokens = (None if prompt_ids is None else
                         int(prompt_ids.size(1)))
        text, finish = self._finish(
            tokenizer, tokenizer.decode(row, skip_special_tokens=True),
            row.tolist(), steps)
        return Generation(text=text, prompt_tokens=prompt_tokens,
                          completion_tokens=steps, finish_reason=finish)

    def generate_many(self, requests: Sequence[GenerationRequest],
                      on_result: ResultCallback) -> None:
        import torch

        # The thread count applies to generation only: left set, it would
        # change the numerics (and speed) of whatever the process runs next,
        # e.g. training right after a cold-cache preference run.
        previous = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            self._generate_all(requests, on_result)
        finally:
            torch.set_num_threads(previous)

    def _generate_all(self, requests: Sequence[GenerationRequest],
                      on_result: ResultCallback) -> None:
        index = 0
        while index < len(requests):
            request = requests[index]
            if request.image is not None or self.vision:
                try:
                    if not self.vision:
                        raise BackendError(
                            f"'{self.model}' is not a vision-language model: "
                            'it cannot read the image')
                    on_result(index, self._vision_one(request))
                except Exception as exc:
                    on_result(index, exc)
                index += 1
                continue
            end = index
            while (end < len(requests) and end - index < self.batch_size
                   and requests[end].image is None):
                end += 1
            batch = requests[index:end]
            try:
                outcomes: List[Any] = list(self._text_batch(batch))
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for offset, outcome in enumerate(outcomes):
                on_result(index + offset, outcome)
            index = end

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(model={self.model!r}, '
                f'vision={self.vision}, device={self.device!r}, '
                f'decoding={self.decoding!r})')
