r"""The two prompts of MLLMRec and their safe filling.

Prompt1 asks the MLLM for the semantic description of an item image,

.. math::
    D_s^i = \mathrm{MLLM}(\mathrm{Prompt1}, D_v^i),

and Prompt2 asks for the preference of user :math:`u` from the list of
multimodal descriptions of the items :math:`u` interacted with,

.. math::
    P_u = \mathrm{MLLM}(\mathrm{Prompt2}, \mathrm{List}_u), \qquad
    \mathrm{List}_u = [D_m^i \mid r_{u,i} = 1].

The wording is that of the authors' reasoning scripts
(``reasoning/5image2text.py`` and ``reasoning/6preference-generation.py`` of
the reference code), with the dataset name turned back into the
:obj:`{dataset name}` placeholder the paper prints (the reference hard-coded
"Clothing, Shoes & Jewelry" for every dataset).

Prompt2 is sent as printed, by default after the system message
:obj:`PREFERENCE_SYSTEM_PROMPT`: read alone, Prompt2 leads a small model
(SmolLM2-135M) to answer :obj:`"The user preferences are: 1. <title> 2.
<title> ..."`, a list of the items it was given; the system message asks
for a preference in plain prose instead.  :obj:`PreferencePrompt(
system=None)` sends Prompt2 alone, as earlier versions did (the model's
chat template may then add its own default system message).

Item text is *data*: values are substituted in one pass, so a title that
contains :obj:`{dataset name}`, :obj:`{list}` or any other braces is inserted
literally and never re-read as a placeholder, and the list is rendered as a
JSON array of strings, so quotes, brackets and newlines inside a description
cannot close the list or start a new instruction line.
"""
from __future__ import annotations

import json
import re
from typing import Dict, Iterable, Optional, Sequence

#: Prompt1 (image -> semantic description); :obj:`{dataset name}` is the
#: dataset's domain (``data.domain``, e.g. :obj:`"Baby"`).
PROMPT1 = (
    'Please convert the given image into an accurate and concise textual '
    'description relevant to the {dataset name}, focusing on extracting key '
    'attributes that can influence the buying behavior of users, such as '
    'color, material, style, functionality, etc. To generate the textual '
    'description using a one-paragraph natural language overview in no more '
    'than 100 words.')

#: Prompt2 (behavioural description list -> user preference); :obj:`{list}`
#: is the JSON array of the user's item descriptions.
PROMPT2 = (
    'Please reason about the user preferences based on the following list of '
    'item descriptions that he or she has interacted with. The list is: '
    '{list}. To generate the user preferences using a one-paragraph natural '
    'language in no more than 100 words.')

#: The system message sent with Prompt2 by default: it asks for what the
#: user likes, in prose, and forbids the list of items that small models
#: otherwise write.  Not in the paper (which does not say whether its MLLM
#: was given a system message).
PREFERENCE_SYSTEM_PROMPT = (
    'You write short user profiles for a recommender system. Given the '
    'items a user interacted with, answer with one paragraph of plain prose '
    'that begins with "This user enjoys" and describes what the user likes '
    'in general terms: genres, themes, styles and qualities. Do not write a '
    'list and do not repeat the item titles.')

_PLACEHOLDER = re.compile(r'\{(dataset name|list)\}')


def render_item_list(descriptions: Iterable[str]) -> str:
    r"""Renders item descriptions as the JSON array that fills
    :obj:`{list}`: every description is one quoted string, whatever
    characters it holds."""
    return json.dumps(list(descriptions), ensure_ascii=False)


def fill_template(template: str, values: Dict[str, str]) -> str:
    r"""Substitutes the placeholders :obj:`{dataset name}` and :obj:`{list}`
    of :obj:`template` by :obj:`values` in a single pass.

    Inserted values are never scanned again, and braces of the template that
    are not one of these placeholders are kept as they are.

    Raises:
        ValueError: If the template uses a placeholder missing from
            :obj:`values`.
    """
    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"The prompt template uses '{{{name}}}' but no "
                             f"value was given for it (given: "
                             f"{sorted(values)})")
        return values[name]

    return _PLACEHOLDER.sub(substitute, template)


class DescriptionPrompt:
    r"""Prompt1: the instruction shown with an item image.

    .. math::
        D_s^i = \mathrm{MLLM}(\mathrm{Prompt1}, D_v^i)

    Args:
        template (str, optional): The instruction; :obj:`{dataset name}` is
            replaced by the domain. (default: :obj:`PROMPT1`)
    """
    def __init__(self, template: str = PROMPT1) -> None:
        self.template = template

    def format(self, domain: str) -> str:
        r"""Returns the prompt for a dataset of :obj:`domain` (e.g.
        :obj:`"Baby"`)."""
        return fill_template(self.template, {'dataset name': domain})

    def __repr__(self) -> str:
        default = self.template == PROMPT1
        return f'{self.__class__.__name__}(paper={default})'


class PreferencePrompt:
    r"""Prompt2: the instruction that turns a user's behavioural description
    list into a preference.

    .. math::
        P_u = \mathrm{MLLM}(\mathrm{Prompt2}, \mathrm{List}_u)

    Args:
        template (str, optional): The instruction; :obj:`{list}` is replaced
            by the JSON array of item descriptions and
            :obj:`{dataset name}`, if used, by the domain.
            (default: :obj:`PROMPT2`)
        system (str, optional): The system message sent before it;
            :obj:`None` or :obj:`''` sends none (as earlier versions).
            (default: :obj:`PREFERENCE_SYSTEM_PROMPT`)

    Raises:
        ValueError: If :obj:`template` has no :obj:`{list}` placeholder.
    """
    def __init__(self, template: str = PROMPT2,
                 system: Optional[str] = PREFERENCE_SYSTEM_PROMPT) -> None:
        if '{list}' not in template:
            raise ValueError("A preference prompt template must contain the "
                             "'{list}' placeholder where the user's item "
                             "descriptions go")
        self.template = template
        self.system = system or None

    def format(self, descriptions: Sequence[str], domain: str = '') -> str:
        r"""Returns the prompt listing :obj:`descriptions` (in the given
        order)."""
        return fill_template(self.template, {
            'list': render_item_list(descriptions),
            'dataset name': domain,
        })

    def __repr__(self) -> str:
        default = self.template == PROMPT2
        system = (None if self.system is None else 'default'
                  if self.system == PREFERENCE_SYSTEM_PROMPT else 'custom')
        return (f'{self.__class__.__name__}(paper={default}, '
                f'system={system!r})')
