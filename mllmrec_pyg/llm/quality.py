r"""How readable generated preferences are: pure functions on the texts, and
:func:`cut_runaway`, the post-processing that ends a repetition loop.

Every measure reads *words*: the lower-cased runs of letters and digits of
the text, an apostrophe or hyphen inside a word kept (:func:`words`;
punctuation, markdown and list markers are not words).  On :math:`W` words
:math:`w_1 \dots w_W`, the word :math:`n`-grams are
:math:`g_j = (w_j, \dots, w_{j+n-1})`, :math:`j = 1 \dots W - n + 1`,
overlapping.

.. math::
    \mathrm{distinct}\text{-}n = \frac{|\{g_j\}|}{W - n + 1}, \qquad
    \mathrm{repeats}_n = \max_g |\{j : g_j = g\}|

A text *loops* when :math:`\mathrm{repeats}_3 \ge 3` (one word 3-gram three
times or more: :obj:`"bamboo bamboo bamboo bamboo bamboo"` has the 3-gram
:obj:`(bamboo, bamboo, bamboo)` three times).  :func:`quality_report`
gives, over a set of outputs, the share that loop, the mean distinct-2, the
share that stopped at the token cap, the share that open with assistant
boilerplate (:obj:`BOILERPLATE_OPENINGS`), the share written as a list and
the mean length in words: the :obj:`quality` block of ``mllmrec prefer``'s
:obj:`summary.json`.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    'BOILERPLATE_OPENINGS',
    'RunawayCut',
    'cut_runaway',
    'distinct_n',
    'is_list',
    'items_named',
    'max_ngram_repeats',
    'quality_report',
    'starts_with_boilerplate',
    'words',
]

#: Openings of a chat assistant's boilerplate, matched case-insensitively
#: at the start of the text (after leading spaces, quotes, asterisks and
#: :obj:`#`) and followed by a non-letter: :obj:`"Sure! ..."` matches,
#: :obj:`"Surely ..."` does not.
BOILERPLATE_OPENINGS: Tuple[str, ...] = (
    'sure', 'certainly', 'of course', 'absolutely', 'okay', 'ok', 'alright',
    'here is', "here's", 'here are', 'as an ai', 'as a language model',
    'as an assistant', "i'd be happy", 'i would be happy', "i'm happy",
    'i am happy', "i'd be glad", "i'm glad", 'i am glad', "i'm thrilled",
    'i am thrilled', "i'm excited", "i'd love to", "i'm here to",
    'i can help', 'let me', 'hello', 'hi there', 'great question',
    'thank you',
)

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_LEAD = re.compile(r"^[\s\"'“”‘’*#>_`]+")
_LIST_LINE = re.compile(r'^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S')
_SENTENCE_END = re.compile(r"""[.!?]["')\]”’]*(?=\s|$)""")


def words(text: str) -> List[str]:
    r"""Returns the lower-cased words of :obj:`text`: runs of letters and
    digits, with an apostrophe or hyphen kept inside a word
    (:obj:`"Sci-Fi, children's!"` :math:`\to` :obj:`["sci-fi",
    "children's"]`).

    Args:
        text (str): The text.
    """
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> List[Tuple[str, ...]]:
    return [tuple(tokens[j:j + n]) for j in range(len(tokens) - n + 1)]


def max_ngram_repeats(text: str, n: int = 3) -> int:
    r"""Returns how many times the most frequent word :math:`n`-gram of
    :obj:`text` occurs (overlapping occurrences count; :obj:`0` when the
    text has fewer than :obj:`n` words).

    Args:
        text (str): The text.
        n (int, optional): The :math:`n`-gram length. (default: :obj:`3`)
    """
    grams = _ngrams(words(text), n)
    return max(Counter(grams).values()) if grams else 0


def distinct_n(text: str, n: int = 2) -> Optional[float]:
    r"""Returns the distinct word :math:`n`-grams of :obj:`text` over its
    :math:`n`-grams, or :obj:`None` when it has fewer than :obj:`n` words
    (no :math:`n`-gram: the ratio is undefined).

    Args:
        text (str): The text.
        n (int, optional): The :math:`n`-gram length. (default: :obj:`2`)
    """
    grams = _ngrams(words(text), n)
    if not grams:
        return None
    return len(set(grams)) / len(grams)


def starts_with_boilerplate(
        text: str,
        openings: Sequence[str] = BOILERPLATE_OPENINGS) -> bool:
    r"""Returns whether :obj:`text` opens with one of :obj:`openings`
    (case-insensitive, after leading spaces, quotes, asterisks and
    :obj:`#`; the opening must be followed by a non-letter or the end).

    Args:
        text (str): The text.
        openings (Sequence[str], optional): Lower-case openings.
            (default: :obj:`BOILERPLATE_OPENINGS`)
    """
    head = _LEAD.sub('', text).lower().replace('’', "'")
    for opening in openings:
        if head.startswith(opening):
            rest = head[len(opening):]
            if not rest or not rest[0].isalpha():
                return True
    return False


def is_list(text: str, min_lines: int = 3) -> bool:
    r"""Returns whether :obj:`text` is written as a list: at least
    :obj:`min_lines` lines that start with a bullet (:obj:`-`, :obj:`*`,
    :obj:`•`, :obj:`+`) or a number (:obj:`"1."`, :obj:`"2)"`).

    Args:
        text (str): The text.
        min_lines (int, optional): The fewest list lines.
            (default: :obj:`3`)
    """
    return sum(1 for line in text.splitlines()
               if _LIST_LINE.match(line)) >= min_lines


def items_named(text: str, item_texts: Sequence[str], n: int = 3) -> int:
    r"""Returns how many of :obj:`item_texts` :obj:`text` names: an item is
    named when the first :obj:`n` words of its text (all of them when it has
    fewer) occur in :obj:`text` as consecutive words.

    On item texts that start with the title (:obj:`"Toy Story 1995
    Animation ..."`), this counts the listed titles an output copies
    instead of describing a preference.

    Args:
        text (str): The output.
        item_texts (Sequence[str]): The descriptions listed in its prompt.
        n (int, optional): Words of an item's text that name it.
            (default: :obj:`3`)
    """
    tokens = words(text)
    found = 0
    for item in item_texts:
        head = tuple(words(item)[:n])
        if head and any(tuple(tokens[j:j + len(head)]) == head
                        for j in range(len(tokens) - len(head) + 1)):
            found += 1
    return found


@dataclass(frozen=True)
class RunawayCut:
    r"""What :func:`cut_runaway` did to one text.

    Attributes:
        text (str): The text kept.
        reason (str, optional): :obj:`None` (kept whole), :obj:`"loop"`
            (a repeated word :math:`n`-gram was cut), :obj:`"list"` (a
            list longer than allowed was cut) or :obj:`"cap"` (the sentence
            the token cap interrupted was dropped).
    """
    text: str
    reason: Optional[str] = None


def _word_spans(text: str) -> List[Tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text)]


def _back_to_sentence(text: str, end: int) -> int:
    r"""The end of the last complete sentence of :obj:`text[:end]`, or
    :obj:`end` when no sentence ends there."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, end)]
    return ends[-1] if ends else end


def cut_runaway(text: str, n: int = 3, min_count: int = 3,
                max_list_items: int = 5,
                finish_reason: Optional[str] = None) -> RunawayCut:
    r"""Cuts a repetition loop, a runaway list or a sentence interrupted by
    the token cap off :obj:`text`.

    1. *Loop*: let :math:`g` be the first word :obj:`n`-gram (in reading
       order) to reach its :obj:`min_count`-th occurrence.  The text is
       cut where the *second* occurrence of :math:`g` starts, then back to
       the end of the last complete sentence before that point (a
       :obj:`.`, :obj:`!` or :obj:`?` followed by a space), if one ends
       there.  What is kept has no word :obj:`n`-gram :obj:`min_count`
       times.
    2. *List*: if more than :obj:`max_list_items` lines start with a
       bullet or a number (:func:`is_list`), the text is cut after the
       :obj:`max_list_items`-th such line.
    3. *Cap*: if neither happened and :obj:`finish_reason` is
       :obj:`"length"` (the token cap ended the generation mid-way), the
       text is cut back to the end of its last complete sentence, if it has
       one.

    Texts without any of these are returned unchanged (not even stripped).

    Args:
        text (str): A generated text.
        n (int, optional): The :math:`n`-gram length. (default: :obj:`3`)
        min_count (int, optional): Occurrences that make a loop.
            (default: :obj:`3`)
        max_list_items (int, optional): List lines kept.
            (default: :obj:`5`)
        finish_reason (str, optional): The backend's finish reason of the
            text. (default: :obj:`None`)
    """
    reason: Optional[str] = None
    spans = _word_spans(text)
    tokens = [text[a:b].lower() for a, b in spans]
    seen: Dict[Tuple[str, ...], List[int]] = {}
    for j, gram in enumerate(_ngrams(tokens, n)):
        starts = seen.setdefault(gram, [])
        starts.append(j)
        if len(starts) == min_count:
            cut = spans[starts[1]][0]
            text = text[:_back_to_sentence(text, cut)].rstrip(' ,;:-–—(\n\t')
            reason = 'loop'
            break
    lines = text.splitlines(keepends=True)
    listed = [i for i, line in enumerate(lines) if _LIST_LINE.match(line)]
    if len(listed) > max_list_items:
        text = ''.join(lines[:listed[max_list_items - 1] + 1]).rstrip()
        reason = reason or 'list'
    if reason is None and finish_reason == 'length':
        end = _back_to_sentence(text, len(text))
        if end < len(text.rstrip()):
            text, reason = text[:end], 'cap'
    return RunawayCut(text=text, reason=reason)


def _share(flags: Sequence[bool]) -> Optional[float]:
    return sum(flags) / len(flags) if flags else None


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def quality_report(texts: Sequence[str],
                   finish_reasons: Optional[Sequence[Optional[str]]] = None,
                   item_texts: Optional[Sequence[Sequence[str]]] = None,
                   ) -> Dict[str, Any]:
    r"""Returns the quality measures of :obj:`texts` (one generated output
    each):

    * :obj:`outputs`: how many.
    * :obj:`repeated_3gram_share`: the share that loop
      (:math:`\mathrm{repeats}_3 \ge 3`, :func:`max_ngram_repeats`).
    * :obj:`mean_distinct_2`: the mean of :func:`distinct_n` (:math:`n=2`)
      over the outputs with at least two words.
    * :obj:`token_cap_share`: the share whose finish reason is
      :obj:`"length"` among those with a known finish reason
      (:obj:`None` when no finish reason is known);
      :obj:`finish_reason_known` counts them.
    * :obj:`boilerplate_share`: the share that open with
      :obj:`BOILERPLATE_OPENINGS` (:func:`starts_with_boilerplate`).
    * :obj:`list_share`: the share written as a list (:func:`is_list`).
    * :obj:`mean_words`: the mean length in :func:`words`.
    * :obj:`mean_items_named` and :obj:`items_named_3plus_share` (only with
      :obj:`item_texts`, the descriptions each prompt listed): the mean
      :func:`items_named`, and the share naming three or more.

    Shares and means are :obj:`None` over no outputs.

    Args:
        texts (Sequence[str]): The outputs.
        finish_reasons (Sequence[str], optional): Per output, the backend's
            finish reason (:obj:`"stop"`, :obj:`"length"`) or :obj:`None`
            where it did not say. (default: :obj:`None`, none known)
        item_texts (Sequence[Sequence[str]], optional): Per output, the item
            descriptions of its prompt. (default: :obj:`None`)
    """
    texts = list(texts)
    reasons = list(finish_reasons or [None] * len(texts))
    if len(reasons) != len(texts):
        raise ValueError(f'Got {len(reasons)} finish reasons for '
                         f'{len(texts)} texts')
    distinct = [d for d in (distinct_n(t, 2) for t in texts) if d is not None]
    known = [r for r in reasons if r is not None]
    report: Dict[str, Any] = {
        'outputs': len(texts),
        'repeated_3gram_share': _share([max_ngram_repeats(t, 3) >= 3
                                        for t in texts]),
        'mean_distinct_2': _mean(distinct),
        'token_cap_share': _share([r == 'length' for r in known]),
        'finish_reason_known': len(known),
        'boilerplate_share': _share([starts_with_boilerplate(t)
                                     for t in texts]),
        'list_share': _share([is_list(t) for t in texts]),
        'mean_words': _mean([len(words(t)) for t in texts]),
    }
    if item_texts is not None:
        if len(item_texts) != len(texts):
            raise ValueError(f'Got {len(item_texts)} item lists for '
                             f'{len(texts)} texts')
        named = [items_named(t, items) for t, items in
                 zip(texts, item_texts, strict=True)]
        report['mean_items_named'] = _mean(named)
        report['items_named_3plus_share'] = _share([k >= 3 for k in named])
    return report
