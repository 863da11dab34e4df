r"""The MLLMRec recipe end to end, as one function per stage boundary.

Data flows one way: a dataset (:mod:`mllmrec_pyg.data`) -> image
descriptions (Prompt1) -> item descriptions :math:`D_m = D_t \oplus D_s` ->
user preferences from TRAINING items (Prompt2) -> sentence embeddings
:math:`e_i, e_u` -> the refined item graph and the model (:mod:`mllmrec_pyg.cli.train`).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Mapping, Optional, Sequence, Tuple

import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from mllmrec_pyg.data import split_edge_index, train_edge_index
from mllmrec_pyg.llm.backends import GenerationBackend
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.encode import TextEncoder
from mllmrec_pyg.llm.prefer import FullHistoryLeakWarning
from mllmrec_pyg.llm.text import ItemDescriptions


@dataclass
class ReasoningInputs:
    r"""What the reasoning stage added to a dataset, for the run's report.

    Attributes:
        item_features (str): How :obj:`data['item'].x` was made.
        user_features (str): How :obj:`data['user'].x` was made.
        counts (Dict[str, Any]): Items described, users with an LLM
            preference, users that fell back to the stand-in, ...
    """
    item_features: str
    user_features: str
    counts: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        return {'item_features': self.item_features,
                'user_features': self.user_features, **self.counts}


#: Which interactions :func:`mean_of_items` averages over.
HistorySource = Literal['train', 'full_history']


class FullHistoryMeanLeakWarning(FullHistoryLeakWarning):
    r"""User features are being averaged over the FULL history (validation
    and test items included): every metric computed with them is leaked."""


def mean_of_items(data: HeteroData, item_x: torch.Tensor,
                  source: HistorySource = 'train') -> torch.Tensor:
    r"""The mean of the features of each user's items (zeros for a user
    without one).

    .. math::
        \mathbf{e}_u = \frac{1}{|\mathcal{N}_u|} \sum_{i \in \mathcal{N}_u}
        \mathbf{e}_i

    With :obj:`source="train"`, :math:`\mathcal{N}_u = \{ i : (u, i) \in
    \mathcal{E}_{\mathrm{train}} \}` (the user stand-in of MLLMRec, see
    :func:`mean_of_training_items`).  :obj:`source="full_history"` averages
    over ALL of the user's interactions, validation and test items
    included: the representation then encodes the very items the model is
    scored on.  It exists only to measure that leak, and warns loudly
    (:class:`FullHistoryMeanLeakWarning`).

    Args:
        data (HeteroData): The dataset (with a split).
        item_x (torch.Tensor): The item features, one row per item.
        source (str, optional): :obj:`"train"` or the LEAKY
            :obj:`"full_history"`. (default: :obj:`"train"`)
    """
    if source == 'train':
        edges = train_edge_index(data)
    elif source == 'full_history':
        warnings.warn(
            "LEAK: source='full_history' averages each user's ALL "
            'interactions, validation and test items included. Every '
            'metric computed with these user features is LEAKED; use them '
            'only to measure the leak.', FullHistoryMeanLeakWarning,
            stacklevel=2)
        edges = split_edge_index(data, 'all')
    else:
        raise ValueError(f"Unknown source '{source}' (expected 'train' or "
                         "'full_history')")
    edges = edges.to(item_x.device)
    return scatter(item_x[edges[1]], edges[0], dim=0,
                   dim_size=int(data['user'].num_nodes), reduce='mean')


def mean_of_training_items(data: HeteroData, item_x: torch.Tensor) -> torch.Tensor:
    r"""The user stand-in: the mean of the features of each user's TRAINING
    items (zeros for a user without one).

    .. math::
        \mathbf{e}_u = \frac{1}{|\mathcal{N}_u|} \sum_{i \in \mathcal{N}_u}
        \mathbf{e}_i, \qquad \mathcal{N}_u = \{ i : (u, i) \in
        \mathcal{E}_{\mathrm{train}} \}
    """
    return mean_of_items(data, item_x, source='train')


def preference_user_features(data: HeteroData, texts: Dict[int, str],
                             encoder: TextEncoder,
                             fallback: torch.Tensor) -> Tuple[torch.Tensor, int]:
    r"""The user features of Eq. 5, :math:`\mathbf{e}_u =
    \mathrm{Encoder}(P_u)`, for the users of :obj:`texts` (user index ->
    preference, e.g. from :func:`mllmrec_pyg.llm.outputs.read_preferences_tsv`);
    users without a (non-empty) preference keep their row of
    :obj:`fallback` (e.g. :func:`mean_of_training_items`).

    Returns:
        The :obj:`[num_users, dim]` features and the number of users that
        got an encoded preference.
    """
    if fallback.size(0) != int(data['user'].num_nodes):
        raise ValueError(f'fallback has {fallback.size(0)} rows for '
                         f"{int(data['user'].num_nodes)} users")
    users = sorted(u for u, text in texts.items() if text.strip())
    user_x = fallback.clone()
    if users:
        user_x[torch.tensor(users)] = encoder.encode([texts[u] for u in users]).to(
            user_x.dtype)
    return user_x, len(users)


def encode_item_descriptions(
    data: HeteroData,
    encoder: TextEncoder,
    image_descriptions: Optional[Mapping[int, str]] = None,
) -> Tuple[torch.Tensor, ItemDescriptions]:
    r"""Encodes the item descriptions :math:`D_m^i = D_t^i \oplus D_s^i`
    (Eq. 4): the item's text fields and its image description, cut to the
    encoder's token budget with a fair share per part
    (:func:`~mllmrec_pyg.llm.text.compose_item_descriptions`).  The one
    place that turns items into features, for ``mllmrec run`` and
    ``mllmrec train`` alike.

    .. math::
        \mathbf{e}_i = \mathrm{Encoder}(D_m^i)

    Args:
        data (HeteroData): The dataset.
        encoder (TextEncoder): The sentence encoder.
        image_descriptions (Mapping[int, str], optional): :math:`D_s^i` per
            item index. (default: :obj:`None`)

    Returns:
        The :obj:`[num_items, dim]` float features and the composed
        descriptions (texts, counts, settings).
    """
    from mllmrec_pyg.llm.text import compose_item_descriptions

    items = compose_item_descriptions(data, image_descriptions or {},
                                      tokenizer=encoder.tokenizer,
                                      max_tokens=encoder.token_budget())
    return encoder.encode(items.texts).float(), items


def reason_and_encode(
    data: HeteroData,
    out: str,
    prefer_backend: Optional[GenerationBackend],
    cache: GenerationCache,
    encoder: TextEncoder,
    describe_backend: Optional[GenerationBackend] = None,
    preference_source: str = 'train',
    users: Optional[Sequence[int]] = None,
    progress: bool = True,
) -> ReasoningInputs:
    r"""Runs the reasoning stage of MLLMRec on :obj:`data` and sets
    :obj:`data['item'].x` (:math:`e_i`, Eq. 4) and :obj:`data['user'].x`
    (:math:`e_u`, Eq. 5) in place.

    Writes :obj:`out/describe/` (when :obj:`describe_backend` is given and
    the items have images) and :obj:`out/prefer/`, the same files as
    ``mllmrec describe`` and ``mllmrec prefer``.

    Args:
        data (HeteroData): The dataset.
        out (str): The run's output folder.
        prefer_backend (GenerationBackend, optional): The LLM writing user
            preferences; :obj:`None` uses the mean-of-training-items stand-in
            for every user (labelled as such).
        cache (GenerationCache): The generation cache.
        encoder (TextEncoder): The sentence encoder.
        describe_backend (GenerationBackend, optional): Describes the item
            images (Prompt1). (default: :obj:`None`)
        preference_source (str, optional): :obj:`"train"`, or the LEAKY
            :obj:`"full_history"`. (default: :obj:`"train"`)
        users (Sequence[int], optional): The users who get an LLM
            preference; the others keep the stand-in.
            (default: :obj:`None`, all users)
        progress (bool, optional): Show progress bars. (default: :obj:`True`)
    """
    from mllmrec_pyg.llm.describe import describe_items
    from mllmrec_pyg.llm.prefer import generate_preferences

    counts: Dict[str, Any] = {}
    image_descriptions: Dict[int, str] = {}
    described_by = 'no image descriptions'
    if describe_backend is not None and getattr(data['item'], 'image', None) is not None:
        run = describe_items(data, describe_backend, cache, progress=progress)
        run.write(data, os.path.join(out, 'describe'))
        image_descriptions = run.descriptions()
        described_by = (f'image descriptions by {describe_backend.name}'
                        + ('' if describe_backend.is_llm else
                           ' (NOT an MLLM: a non-LLM image-statistics fallback)'))
        counts['items_described'] = len(image_descriptions)

    item_x, items = encode_item_descriptions(data, encoder, image_descriptions)
    counts['item_descriptions'] = items.counts
    data['item'].x = item_x
    item_features = (f'{encoder.name} embeddings of D_m = item text + '
                     f'{described_by}')

    stand_in = mean_of_training_items(data, data['item'].x)
    if prefer_backend is None:
        data['user'].x = stand_in
        return ReasoningInputs(item_features,
                               'stand-in: mean of the embeddings of each '
                               "user's TRAINING items (no LLM preferences)",
                               counts)

    prefs = generate_preferences(data, prefer_backend, cache, items.texts,
                                 source=preference_source,  # type: ignore[arg-type]
                                 users=users, progress=progress)
    prefs.write(data, os.path.join(out, 'prefer'))
    data['user'].x, num_encoded = preference_user_features(data, prefs.preferences(),
                                                           encoder, stand_in)
    counts['users_with_llm_preference'] = num_encoded
    counts['users_with_stand_in'] = int(data['user'].num_nodes) - num_encoded
    counts['preference_summary'] = {k: v for k, v in prefs.summary(data).items()
                                    if k in ('backend', 'model', 'preference_source',
                                             'calls', 'cache_hits', 'failures',
                                             'tokens_per_second', 'all_outputs',
                                             'seconds')}
    source = ('TRAINING items' if preference_source == 'train' else
              'FULL history (valid/test included: LEAKED)')
    model = f' ({prefer_backend.model})' if prefer_backend.model else ''
    user_features = (f'{encoder.name} embeddings of {prefer_backend.name}{model} preferences '
                     f'from {source}; users without one use the mean of their '
                     'training items')
    return ReasoningInputs(item_features, user_features, counts)
