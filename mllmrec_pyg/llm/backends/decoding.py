r"""The decoding presets of the text backends: what stops a small model from
looping (:obj:`"bamboo bamboo bamboo ..."`) or running a list to the token
cap.

Two presets, chosen with :obj:`decoding=` (``--decoding`` on the command
line):

* :obj:`"guarded"` (the default): repetition control and a stop at the end
  of the paragraph.
* :obj:`"legacy"`: the decoding of earlier versions (greedy, no repetition
  control, no stop sequence), kept to reproduce and measure them; its
  generation parameters, and so its cache keys, are those of earlier
  versions.

Local :obj:`transformers` models (:class:`~mllmrec_pyg.llm.backends.
HuggingFaceBackend`, :class:`~mllmrec_pyg.llm.backends.SmolLM2Backend`),
:obj:`TRANSFORMERS_DECODING`:

================================  ===========  ==========
setting                           guarded      legacy
================================  ===========  ==========
:obj:`repetition_penalty`         1.05         1.0 (off)
:obj:`no_repeat_ngram_size`       4            0 (off)
:obj:`frequency_penalty`          0.3          0 (off)
:obj:`presence_penalty`           0.3          0 (off)
:obj:`stop` (stop strings)        ``"\n\n"``   none
================================  ===========  ==========

:obj:`repetition_penalty` (:obj:`transformers`' own, multiplicative) and
:obj:`no_repeat_ngram_size` count the prompt's tokens too: a strong
repetition penalty keeps the model off the very words of the item
descriptions it should summarise (at 1.2, on 8 users of the synthetic
catalogue, SmolLM2-135M wrote vaguer text, 2 of 8 answers stopped after a
list heading, and it ignored the system message's opening), so it is kept
mild, and the
repetition *of the output* is left to the frequency and presence
penalties, which count generated tokens only, as OpenAI-compatible servers
do (a logits processor of this package).  No token 4-gram is generated
twice, the prompt's included, which also stops the copying of long titles.

OpenAI-compatible servers (:class:`~mllmrec_pyg.llm.backends.
OpenAIHTTPBackend`), :obj:`SERVER_DECODING`, with the request fields every
such server accepts (OpenAI, vLLM, llama.cpp, ollama):

================================  ===========  ============
setting                           guarded      legacy
================================  ===========  ============
:obj:`frequency_penalty`          0.3          not sent (0)
:obj:`presence_penalty`           0.3          not sent (0)
:obj:`stop`                       ``"\n\n"``   not sent
================================  ===========  ============

Server-specific fields (llama.cpp's :obj:`repeat_penalty`, vLLM's
:obj:`repetition_penalty`) are not sent by default, since a strict server
refuses unknown fields: pass them with :obj:`extra_params` (``--server-param
repeat_penalty=1.2``).  Note that ``llama_cpp.server`` applies its own
default :obj:`repeat_penalty` of 1.1 over the last 64 tokens to every
request that does not set one, in both presets.

The stop at ``"\n\n"`` ends the answer with its first paragraph: Prompt2
asks for one.  Every setting, preset or explicit, is part of the backend's
:attr:`~mllmrec_pyg.llm.backends.GenerationBackend.generation_params` and
so of every cache key: outputs cached under other settings are never
reused.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

__all__ = ['DECODINGS', 'SERVER_DECODING', 'TRANSFORMERS_DECODING',
           'check_decoding']

#: The decoding presets, the default first.
DECODINGS: Tuple[str, ...] = ('guarded', 'legacy')

#: Per preset, the defaults of local :obj:`transformers` models.
TRANSFORMERS_DECODING: Mapping[str, Mapping[str, Any]] = {
    'guarded': {'repetition_penalty': 1.05, 'no_repeat_ngram_size': 4,
                'frequency_penalty': 0.3, 'presence_penalty': 0.3,
                'stop': ('\n\n', )},
    'legacy': {'repetition_penalty': 1.0, 'no_repeat_ngram_size': 0,
               'frequency_penalty': 0.0, 'presence_penalty': 0.0,
               'stop': ()},
}

#: Per preset, the defaults of OpenAI-compatible servers (:obj:`None`: the
#: field is not sent).
SERVER_DECODING: Mapping[str, Mapping[str, Any]] = {
    'guarded': {'frequency_penalty': 0.3, 'presence_penalty': 0.3,
                'stop': ('\n\n', )},
    'legacy': {'frequency_penalty': None, 'presence_penalty': None,
               'stop': ()},
}


def check_decoding(decoding: str) -> str:
    r"""Returns :obj:`decoding` if it names a preset.

    Args:
        decoding (str): A preset name.

    Raises:
        ValueError: If it is not one of :obj:`DECODINGS`.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"Unknown decoding '{decoding}': use --decoding "
                         f"{' or '.join(DECODINGS)}")
    return decoding


def preset(table: Mapping[str, Mapping[str, Any]], decoding: str,
           **explicit: Any) -> Dict[str, Any]:
    r"""Returns the settings of :obj:`decoding` from :obj:`table`, each
    replaced by the value in :obj:`explicit` that is not :obj:`None`.

    Args:
        table (Mapping): :obj:`TRANSFORMERS_DECODING` or
            :obj:`SERVER_DECODING`.
        decoding (str): The preset.
        **explicit: Settings given explicitly.
    """
    settings = dict(table[check_decoding(decoding)])
    unknown = sorted(set(explicit) - set(settings))
    assert not unknown, unknown
    settings.update({k: v for k, v in explicit.items() if v is not None})
    if settings.get('stop') is not None:
        settings['stop'] = tuple(settings['stop'])
    return settings
