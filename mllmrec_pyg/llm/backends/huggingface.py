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
    the same text.

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
    """
    name = 'hf'

    def __init__(self, model: str, gguf_file: Optional[str] = None,
                 revision: Optional[str] = None,
                 vision: Optional[bool] = None, max_new_tokens: int = 160,
                 do_sample: bool = False, temperature: float = 1.0,
                 seed: int = 0, batch_size: int = 1,
                 device: Optional[str] = None,
                 num_threads: Optional[int] = None,
                 model_name: Optional[str] = None) -> None:
        super().__init__()
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
        return kwargs

    def _chat_text(self, template_owner: Any, prompt: str,
                   image: bool) -> Optional[str]:
        if not getattr(template_owner, 'chat_template', None):
            return None
        content: Any = prompt
        if image:
            content = [{'type': 'image'}, {'type': 'text', 'text': prompt}]
        return template_owner.apply_chat_template(
            [{'role': 'user', 'content': content}], tokenize=False,
            add_generation_prompt=True)

    def _text_batch(self, batch: Sequence[GenerationRequest]
                    ) -> List[Generation]:
        import torch

        tokenizer, network = self.load()
        texts = []
        for request in batch:
            chat = self._chat_text(tokenizer, request.prompt, image=False)
            texts.append(chat if chat is not None else request.prompt)
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
            text = tokenizer.decode(row, skip_special_tokens=True)
            results.append(Generation(text=text.strip(),
                                      prompt_tokens=int(mask.sum()),
                                      completion_tokens=count))
        return results

    def _vision_one(self, request: GenerationRequest) -> Generation:
        import torch
        from PIL import Image

        processor, network = self.load()
        inputs: Any
        if request.image is None:
            raise BackendError('The vision backend needs an image')
        image = Image.open(io.BytesIO(request.image)).convert('RGB')
        chat = self._chat_text(processor, request.prompt, image=True)
        inputs = processor(images=[image],
                           text=chat if chat is not None else request.prompt,
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
        text = tokenizer.decode(row, skip_special_tokens=True)
        return Generation(text=text.strip(), prompt_tokens=prompt_tokens,
                          completion_tokens=steps)

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
                f'vision={self.vision}, device={self.device!r})')
