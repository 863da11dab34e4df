r"""The multimodal description of an item,

.. math::
    D_m^i = D_t^i \oplus D_s^i,

the concatenation of the item's metadata text :math:`D_t^i` (its text
fields, in a configurable order) and the semantic description
:math:`D_s^i` an MLLM wrote for its image, cut to the encoder's token limit.

all-MiniLM-L6-v2 reads 256 word pieces.  The reference appended the image
description last and let the encoder truncate, so long metadata silently
removed it.  Here the cut is *fair*: when the parts do not fit, each part
keeps :math:`\min(n_j, c)` tokens for the largest cap :math:`c` that fits,
so a long description shortens the long parts and never erases a short
one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from torch_geometric.data import HeteroData

#: The name of the image-description part in :obj:`order`.
IMAGE = 'image'


class Tokenizer(Protocol):
    r"""What :func:`compose_item_descriptions` needs from a tokenizer: a
    Hugging Face fast tokenizer (e.g. the encoder's) fits."""
    def __call__(self, text: str, add_special_tokens: bool = ...,
                 return_offsets_mapping: bool = ...) -> Mapping[str, Any]:
        ...


class WordTokenizer:
    r"""Counts whitespace-separated words as tokens (for use without the
    encoder's tokenizer; word pieces are at least as many as words)."""
    def __call__(self, text: str, add_special_tokens: bool = False,
                 return_offsets_mapping: bool = True) -> Dict[str, Any]:
        offsets = [m.span() for m in re.finditer(r'\S+', text)]
        return {'input_ids': list(range(len(offsets))),
                'offset_mapping': offsets}

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


def _offsets(tokenizer: Tokenizer, text: str) -> List[Tuple[int, int]]:
    encoded = tokenizer(text, add_special_tokens=False,
                        return_offsets_mapping=True)
    return [tuple(span) for span in encoded['offset_mapping']]  # type: ignore


def fair_allowances(counts: Sequence[int], budget: int) -> List[int]:
    r"""Returns the tokens each part keeps when parts of :obj:`counts`
    tokens must share :obj:`budget`: :math:`\min(n_j, c)` for the largest
    cap :math:`c` with :math:`\sum_j \min(n_j, c) \le` :obj:`budget`, the
    remainder going one token each to the first parts still cut."""
    if sum(counts) <= budget:
        return list(counts)
    if budget <= 0:
        return [0] * len(counts)
    low, high = 0, max(counts)
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(n, cap) for n in counts) <= budget:
            low = cap
        else:
            high = cap - 1
    allowances = [min(n, low) for n in counts]
    spare = budget - sum(allowances)
    for j, n in enumerate(counts):
        if spare == 0:
            break
        if n > allowances[j]:
            allowances[j] += 1
            spare -= 1
    return allowances


@dataclass
class ItemDescriptions:
    r"""The composed :math:`D_m^i` of every item, and what happened.

    Attributes:
        texts (List[str]): :math:`D_m^i` per item ('' when the item has
            neither text nor an image description).
        counts (Dict[str, int]): :obj:`items`, :obj:`without_text`,
            :obj:`without_image_description`, :obj:`empty` and
            :obj:`truncated` (items cut to the token limit).
        settings (Dict[str, Any]): The order, separator and token limit
            used (recorded in the run's outputs).
    """
    texts: List[str]
    counts: Dict[str, int] = field(default_factory=dict)
    settings: Dict[str, Any] = field(default_factory=dict)


def compose_item_descriptions(
    data: HeteroData,
    image_descriptions: Optional[Mapping[int, str]] = None,
    order: Optional[Sequence[str]] = None,
    separator: str = ' ',
    max_tokens: Optional[int] = 256,
    tokenizer: Optional[Tokenizer] = None,
) -> ItemDescriptions:
    r"""Builds :math:`D_m^i = D_t^i \oplus D_s^i` for every item of
    :obj:`data`.

    Args:
        data (HeteroData): The dataset; :obj:`data['item'].text` (a mapping
            of field name to per-item strings) is read when present.
        image_descriptions (Mapping[int, str], optional): :math:`D_s^i` per
            item index (items absent or :obj:`''` have none).
            (default: :obj:`None`)
        order (Sequence[str], optional): The parts in order: text field names
            and :obj:`"image"` for :math:`D_s^i`.  (default: every text field
            in stored order, then :obj:`"image"`, as in the paper)
        separator (str, optional): Put between non-empty parts.
            (default: :obj:`" "`)
        max_tokens (int, optional): The token budget of one description
            (all-MiniLM-L6-v2: 256 word pieces less its 2 special tokens;
            see :func:`mllmrec_pyg.llm.encode.TextEncoder.token_budget`);
            :obj:`None` keeps everything. (default: :obj:`256`)
        tokenizer (Tokenizer, optional): Counts tokens and gives their
            character offsets (the encoder's tokenizer).
            (default: :class:`WordTokenizer`)

    Raises:
        ValueError: If :obj:`order` names a field the dataset lacks.
    """
    store = data['item']
    fields: Mapping[str, Sequence[str]] = getattr(store, 'text', None) or {}
    images = image_descriptions or {}
    if order is None:
        order = [*fields, IMAGE]
    unknown = [name for name in order if name != IMAGE and name not in fields]
    if unknown:
        raise ValueError(f'Unknown item text field(s) {unknown} in the '
                         f'description order (the dataset has '
                         f'{sorted(fields)} and {IMAGE!r})')
    tokenizer = tokenizer or WordTokenizer()
    separator_tokens = len(_offsets(tokenizer, separator))

    texts: List[str] = []
    counts = {'items': int(store.num_nodes), 'without_text': 0,
              'without_image_description': 0, 'empty': 0, 'truncated': 0}
    for i in range(int(store.num_nodes)):
        parts: List[str] = []
        has_text = has_image = False
        for name in order:
            value = images.get(i, '') if name == IMAGE else fields[name][i]
            value = ' '.join(str(value or '').split())
            if value:
                parts.append(value)
                has_image |= name == IMAGE
                has_text |= name != IMAGE
        counts['without_text'] += not has_text
        counts['without_image_description'] += not has_image
        counts['empty'] += not parts
        if max_tokens is not None and parts:
            spans = [_offsets(tokenizer, part) for part in parts]
            budget = max_tokens - separator_tokens * (len(parts) - 1)
            allowances = fair_allowances([len(s) for s in spans], budget)
            if allowances != [len(s) for s in spans]:
                counts['truncated'] += 1
                parts = [part[:span[keep - 1][1]] if keep > 0 else ''
                         for part, span, keep in zip(parts, spans,
                                                     allowances, strict=True)]
                parts = [part for part in parts if part]
        texts.append(separator.join(parts))
    settings = {'order': list(order), 'separator': separator,
                'max_tokens': max_tokens, 'tokenizer': repr(tokenizer)
                if isinstance(tokenizer, WordTokenizer)
                else type(tokenizer).__name__}
    return ItemDescriptions(texts=texts, counts=counts, settings=settings)


def prompt_item_descriptions(
    data: HeteroData,
    image_descriptions: Optional[Mapping[int, str]] = None,
    tokenizer: Optional[Tokenizer] = None,
    max_tokens: Optional[int] = None,
) -> ItemDescriptions:
    r"""The item descriptions :math:`D_m^i = D_t^i \oplus D_s^i` that both
    the encoder (:math:`\mathbf{e}_i = \mathrm{Encoder}(D_m^i)`) and Prompt2
    read: the one input path of ``mllmrec run`` and ``mllmrec prefer``, so
    that both give the same prompts for the same users.

    .. math::
        P_u = \mathrm{MLLM}(\mathrm{Prompt2}, [D_m^i \mid (u, i) \in
        \mathcal{E}_{\mathrm{train}}])

    It is :func:`compose_item_descriptions` with the default encoder's
    tokenizer and token budget (all-MiniLM-L6-v2: 254 word pieces), loaded
    without the encoder's weights when no encoder is given
    (:func:`~mllmrec_pyg.llm.encode.default_encoder_tokenizer`).

    Args:
        data (HeteroData): The dataset.
        image_descriptions (Mapping[int, str], optional): :math:`D_s^i` per
            item index. (default: :obj:`None`)
        tokenizer (Tokenizer, optional): Counts tokens; pass
            :obj:`encoder.tokenizer` of an open
            :class:`~mllmrec_pyg.llm.encode.TextEncoder`.
            (default: the default encoder's tokenizer)
        max_tokens (int, optional): The token budget of one description;
            pass :obj:`encoder.token_budget()`.
            (default: the default encoder's budget, :obj:`254`)
    """
    from mllmrec_pyg.llm.encode import (
        default_encoder_tokenizer,
        default_token_budget,
    )

    if tokenizer is None:
        tokenizer = default_encoder_tokenizer()
    if max_tokens is None:
        max_tokens = default_token_budget()
    return compose_item_descriptions(data, image_descriptions or {},
                                     tokenizer=tokenizer,
                                     max_tokens=max_tokens)
