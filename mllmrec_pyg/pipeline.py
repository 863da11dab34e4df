r"""The MLLMRec recipe end to end, as one function per stage boundary.

Data flows one way: a dataset (:mod:`mllmrec_pyg.data`) -> image
descriptions (Prompt1) -> item descriptions :math:`D_m = D_t \oplus D_s` ->
user preferences from TRAINING items (Prompt2) -> sentence embeddings
:math:`e_i, e_u` -> the refined item graph and the model (:mod:`mllmrec_pyg.experiment`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from mllmrec_pyg.data import HistorySource, history_edge_index
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
    (:class:`FullHistoryMeanLeakWarning`).  The edges come from
    :func:`~mllmrec_pyg.data.history_edge_index`, the package's one
    train/full-history switch.

    Args:
        data (HeteroData): The dataset (with a split).
        item_x (torch.Tensor): The item features, one row per item.
        source (str, optional): :obj:`"train"` or the LEAKY
            :obj:`"full_history"`. (default: :obj:`"train"`)
    """
    edges, _ = history_edge_index(data, source, what="user features (each user's mean "
                                  'of item features)', category=FullHistoryMeanLeakWarning)
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


def encode_item_texts(encoder: TextEncoder, texts: Sequence[str]
                      ) -> Tuple[torch.Tensor, int]:
    r"""Encodes the item descriptions :obj:`texts`, giving the items
    without any text a zero feature vector instead of the embedding of
    :obj:`''` (which all of them would share, cosine 1, so that the refined
    item graph linked them all to each other).  A zero vector has no cosine
    similarity: :class:`~mllmrec_pyg.transforms.ThresholdKNN` gives it no
    edge, and :class:`~mllmrec_pyg.transforms.JaccardCoOccurrence` reads
    interactions only.  Warns when there are such items.

    Without empty texts this is exactly :obj:`encoder.encode(texts)`; with
    them, only the others are encoded.

    Args:
        encoder (TextEncoder): The sentence encoder.
        texts (Sequence[str]): One description per item; :obj:`''` (or
            whitespace) for none.

    Returns:
        The :obj:`[len(texts), dim]` float features and the number of items
        without text.
    """
    keep = [i for i, text in enumerate(texts) if text.strip()]
    empty = len(texts) - len(keep)
    if not empty:
        return encoder.encode(texts).float(), 0
    warnings.warn(f'{empty} items have no text: they get a zero feature '
                  'vector and no similarity edge', UserWarning, stacklevel=2)
    if not keep:
        return torch.zeros(len(texts), int(encoder.dim)), empty
    encoded = encoder.encode([texts[i] for i in keep]).float()
    x = encoded.new_zeros(len(texts), encoded.size(1))
    x[torch.tensor(keep, dtype=torch.long, device=x.device)] = encoded
    return x, empty


def encode_item_descriptions(
    data: HeteroData,
    encoder: TextEncoder,
    image_descriptions: Optional[Mapping[int, str]] = None,
) -> Tuple[torch.Tensor, ItemDescriptions]:
    r"""Encodes the item descriptions :math:`D_m^i = D_t^i \oplus D_s^i`
    (Eq. 4): the item's text fields and its image description, cut to the
    encoder's token budget with a fair share per part
    (:func:`~mllmrec_pyg.llm.text.prompt_item_descriptions`, the same texts
    Prompt2 lists).  The one
    place that turns items into features, for ``mllmrec run`` and
    ``mllmrec train`` alike.

    .. math::
        \mathbf{e}_i = \mathrm{Encoder}(D_m^i)

    Items without any text get a zero vector (see :func:`encode_item_texts`),
    counted in :obj:`counts['empty']` of the descriptions.

    Args:
        data (HeteroData): The dataset.
        encoder (TextEncoder): The sentence encoder.
        image_descriptions (Mapping[int, str], optional): :math:`D_s^i` per
            item index. (default: :obj:`None`)

    Returns:
        The :obj:`[num_items, dim]` float features and the composed
        descriptions (texts, counts, settings).
    """
    from mllmrec_pyg.llm.text import prompt_item_descriptions

    items = prompt_item_descriptions(data, image_descriptions or {},
                                     tokenizer=encoder.tokenizer,
                                     max_tokens=encoder.token_budget())
    x, items.counts['empty'] = encode_item_texts(encoder, items.texts)
    return x, items


def require_item_text(data: HeteroData) -> None:
    r"""Raises a clear error when the items have neither text nor features."""
    if not getattr(data['item'], 'text', None):
        raise ValueError(f'{data.name}: the items have no text to encode (data["item"].text '
                         'is absent) and no features data["item"].x; this model needs item '
                         'features')


def encode_items(data: HeteroData, progress: bool = False) -> torch.Tensor:
    r"""Item features as ``mllmrec run`` computes them without image
    descriptions: all-MiniLM-L6-v2 embeddings of the composed item
    descriptions (:func:`encode_item_descriptions`), through the encoder's
    content-keyed cache.

    Args:
        data (HeteroData): The dataset.
        progress (bool, optional): Show the encoder's progress bar
            (:class:`~mllmrec_pyg.llm.encode.TextEncoder`).
            (default: :obj:`False`)
    """
    require_item_text(data)
    with TextEncoder(progress=progress) as encoder:
        return encode_item_descriptions(data, encoder)[0]


def preference_features_from_file(data: HeteroData, path: str,
                                  progress: bool = False) -> Dict[str, Any]:
    r"""Sets :obj:`data['user'].x` from the :obj:`preferences.tsv` of
    ``mllmrec prefer`` (all-MiniLM-L6-v2 embeddings; users without a
    preference keep the mean of their training items) and returns how, for
    the run's report.  The file must have been built on :obj:`data`'s
    split (:func:`~mllmrec_pyg.llm.outputs.read_preferences_tsv` checks its
    fingerprint); a full-history file warns loudly and is labelled LEAKED.
    :obj:`progress` shows the encoder's progress bar (default: :obj:`False`).
    """
    from mllmrec_pyg.llm.outputs import read_preferences_tsv

    texts, sources = read_preferences_tsv(path, data)
    leaked = 'full_history' in sources
    if leaked:
        warnings.warn(f'{path} was generated from the FULL history (validation and test '
                      'items included): every metric of this run is LEAKED',
                      FullHistoryLeakWarning, stacklevel=2)
    with TextEncoder(progress=progress) as encoder:
        data['user'].x, encoded = preference_user_features(
            data, texts, encoder, mean_of_training_items(data, data['item'].x))
        name = encoder.name
    num_users = int(data['user'].num_nodes)
    return {'user_features': (f'{name} embeddings of the preferences in {path} '
                              f'(preference_source: {", ".join(sources)}'
                              f'{"; LEAKED" if leaked else ""}); {encoded}/{num_users} '
                              'users, the others: the mean of their training items'),
            'preferences': path, 'preference_source': sources,
            'users_with_preference': encoded, 'leaked': leaked}


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
    from mllmrec_pyg.experiment.pipeline import reason

    info = reason(data, out, prefer_backend, cache, describe=describe_backend,
                  preference_source=preference_source, users=users, encoder=encoder,
                  progress=progress)
    item_features = info.pop('item_features')
    user_features = info.pop('user_features')
    return ReasoningInputs(item_features, user_features, info)
