r"""User preferences from the descriptions of the user's TRAINING items.

.. math::
    P_u = \mathrm{MLLM}(\mathrm{Prompt2}, \mathrm{List}_u), \qquad
    \mathrm{List}_u = [D_m^i \mid (u, i) \in \mathcal{E}_{\mathrm{train}}]

The reference built :math:`\mathrm{List}_u` from all interactions, so the
validation and test items a model is later scored on were described to the
LLM: a test leak.  Here the list is read through
:func:`mllmrec_pyg.data.history_edge_index` (the training edges);
:obj:`source="full_history"` reproduces the leaky protocol for measuring the
leak, warns loudly (:class:`FullHistoryLeakWarning`) and is written into
every artefact.  Every artefact also records the
:func:`~mllmrec_pyg.data.split_fingerprint` of the training edges, so that
it is refused on another split.

What is written is the generation after
:func:`~mllmrec_pyg.llm.quality.cut_runaway` (a repetition loop, a list
of more than five lines, or the sentence the token cap interrupted is cut;
:obj:`runaway_cut=False` keeps the text whole), and :obj:`summary.json` holds a quality report of it
(:func:`~mllmrec_pyg.llm.quality.quality_report`): the share of outputs
that loop, their distinct-2, the share that hit the token cap, the share
that open with assistant boilerplate, their length.  The generation cache
keeps the texts as generated.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data.interactions import (
    FullHistoryLeakWarning,
    HistorySource,
    history_edge_index,
    split_fingerprint,
)
from mllmrec_pyg.llm.backends.base import GenerationBackend, GenerationRequest
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.outputs import PREFERENCE_COLUMNS, write_json, write_tsv
from mllmrec_pyg.llm.prompts import PreferencePrompt
from mllmrec_pyg.llm.quality import RunawayCut, cut_runaway, quality_report
from mllmrec_pyg.llm.runner import RunResult, run_requests, run_summary

#: Kept for backward compatibility: :obj:`mllmrec_pyg.data.HistorySource`.
PreferenceSource = HistorySource

__all__ = [
    'FullHistoryLeakWarning',
    'HistoryPolicy',
    'PreferencePrompts',
    'PreferenceRun',
    'PreferenceSource',
    'UserPrompt',
    'build_preference_prompts',
    'generate_preferences',
    'sample_users',
]


def sample_users(num_users: int, count: int, seed: int = 0) -> List[int]:
    r"""Returns :obj:`count` user indices of :obj:`range(num_users)` drawn
    without replacement by :obj:`random.Random(seed)`, in increasing order
    (all users when :obj:`count >= num_users`).

    Args:
        num_users (int): The users of the dataset.
        count (int): How many to draw.
        seed (int, optional): The seed. (default: :obj:`0`)

    Raises:
        ValueError: If :obj:`count < 1`.
    """
    if count < 1:
        raise ValueError(f'--user-sample must be >= 1 (got {count})')
    if count >= num_users:
        return list(range(num_users))
    return sorted(random.Random(seed).sample(range(num_users), count))


@dataclass(frozen=True)
class HistoryPolicy:
    r"""How a user's item list is chosen and capped.

    Items are ordered most recent first where the interactions have
    timestamps; otherwise, when a user has more than :obj:`max_items`
    items, a sample of :obj:`max_items` is drawn with a generator seeded by
    :obj:`seed` and the user index (so a user's sample does not depend on
    which other users are in the run).  Then the list keeps at most
    :obj:`max_items` items, and items are dropped from its end until the
    whole prompt has at most :obj:`max_prompt_words` words.

    Args:
        max_items (int, optional): Most items listed. (default: :obj:`50`)
        max_prompt_words (int, optional): Most words in the whole prompt.
            (default: :obj:`1500`)
        seed (int, optional): Seed of the sample. (default: :obj:`0`)
    """
    max_items: int = 50
    max_prompt_words: int = 1500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_prompt_words < 1:
            raise ValueError('max_items and max_prompt_words must be >= 1')


@dataclass
class UserPrompt:
    r"""The preference prompt of one user.

    Attributes:
        user (int): The user's index.
        item_indices (List[int]): The items listed, in prompt order.
        history (int): The user's items in the source before the policy.
        prompt (str): The full prompt.
    """
    user: int
    item_indices: List[int]
    history: int
    prompt: str


@dataclass
class PreferencePrompts:
    r"""The prompts of a run and how they were built."""
    prompts: List[UserPrompt]
    source: HistorySource
    ordering: str
    policy: HistoryPolicy
    skipped_users: List[int] = field(default_factory=list)
    truncated_users: int = 0
    system: Optional[str] = None
    item_texts: Dict[int, List[str]] = field(default_factory=dict)


def build_preference_prompts(
    data: HeteroData,
    descriptions: Sequence[str],
    source: HistorySource = 'train',
    policy: HistoryPolicy = HistoryPolicy(),
    template: PreferencePrompt = PreferencePrompt(),
    users: Optional[Sequence[int]] = None,
) -> PreferencePrompts:
    r"""Builds Prompt2 for each user from the descriptions of the items the
    user interacted with in the TRAINING split (or the full history).

    Args:
        data (HeteroData): The dataset (with a split).
        descriptions (Sequence[str]): :math:`D_m^i` per item index; empty
            descriptions are left out of the lists.
        source (str, optional): :obj:`"train"`, or :obj:`"full_history"`
            (leaky; warns). (default: :obj:`"train"`)
        policy (HistoryPolicy, optional): Ordering and caps.
        template (PreferencePrompt, optional): Prompt2.
        users (Sequence[int], optional): User indices to build for.
            (default: all users)

    Users with no described item in the source get no prompt; they are
    listed in :obj:`skipped_users`.
    """
    edge_index, times = history_edge_index(data, source,
                                           what='user preferences')
    if len(descriptions) != int(data['item'].num_nodes):
        raise ValueError(f'Got {len(descriptions)} item descriptions for '
                         f"{int(data['item'].num_nodes)} items")
    num_users = int(data['user'].num_nodes)
    users = list(range(num_users)) if users is None else list(users)

    # Group edges by user once; most recent first where there is a time.
    if times is not None:
        order = torch.argsort(-times.to(torch.float64), stable=True)
    else:
        order = torch.arange(edge_index.size(1))
    order = order[torch.argsort(edge_index[0, order], stable=True)]
    row = edge_index[0, order]
    col = edge_index[1, order].tolist()
    starts = torch.searchsorted(row, torch.arange(num_users + 1)).tolist()
    domain = str(getattr(data, 'domain', '') or '')

    result = PreferencePrompts(
        prompts=[], source=source, policy=policy,
        ordering='most_recent_first' if times is not None else
        'seeded_sample', system=template.system)
    for user in users:
        items = [i for i in col[starts[user]:starts[user + 1]]
                 if descriptions[i]]
        history = len(items)
        if not items:
            result.skipped_users.append(user)
            continue
        if times is None and len(items) > policy.max_items:
            rng = random.Random(f'{policy.seed}:{user}')
            items = rng.sample(items, policy.max_items)
        items = items[:policy.max_items]
        words = len(template.format([], domain).split())
        kept = 0
        for i in items:
            words += len(descriptions[i].split())
            if words > policy.max_prompt_words and kept > 0:
                break
            kept += 1
        items = items[:kept]
        prompt = template.format([descriptions[i] for i in items], domain)
        if len(items) < history:
            result.truncated_users += 1
        result.item_texts[user] = [descriptions[i] for i in items]
        result.prompts.append(UserPrompt(user=user, item_indices=items,
                                         history=history, prompt=prompt))
    return result


@dataclass
class PreferenceRun:
    r"""The preferences of a run, with its prompts and counters.

    :obj:`result` holds the texts as generated (and cached);
    :meth:`preferences` the texts written, after
    :func:`~mllmrec_pyg.llm.quality.cut_runaway` when :obj:`runaway_cut`.
    """
    prompts: PreferencePrompts
    result: RunResult
    backend: GenerationBackend
    seconds: float
    extra: Dict[str, Any] = field(default_factory=dict)
    runaway_cut: bool = True

    def cuts(self) -> Dict[int, RunawayCut]:
        r"""Returns :func:`~mllmrec_pyg.llm.quality.cut_runaway` of each
        generated text per user index (the text whole, with no reason, when
        :obj:`runaway_cut` is off)."""
        texts = self.result.texts
        if not self.runaway_cut:
            return {int(u): RunawayCut(t) for u, t in texts.items()}
        reasons = self.result.finish_reasons
        return {int(u): cut_runaway(t, finish_reason=reasons.get(u))
                for u, t in texts.items()}

    def preferences(self) -> Dict[int, str]:
        r"""Returns the preference text per user index, as written (failed
        users are absent)."""
        return {u: cut.text for u, cut in self.cuts().items()}

    def quality(self) -> Dict[str, Any]:
        r"""Returns the :obj:`quality` block of :obj:`summary.json`:
        :func:`~mllmrec_pyg.llm.quality.quality_report` of the preferences
        as written, the settings that shaped them, and, with
        :obj:`runaway_cut`, how many were cut and the report of the texts
        as generated (:obj:`before_cut`)."""
        cuts = self.cuts()
        users = [p.user for p in self.prompts.prompts if p.user in cuts]
        reasons = [self.result.finish_reasons.get(str(u)) for u in users]
        items = [self.prompts.item_texts.get(u, []) for u in users]
        report: Dict[str, Any] = quality_report(
            [cuts[u].text for u in users], reasons, items)
        if self.runaway_cut:
            report['cut'] = {reason: sum(cuts[u].reason == reason
                                         for u in users)
                             for reason in ('loop', 'list', 'cap')}
            report['before_cut'] = quality_report(
                [self.result.texts[str(u)] for u in users], reasons, items)
        return report

    def summary(self, data: HeteroData) -> Dict[str, Any]:
        r"""Returns the :obj:`summary.json` content: the keys every stage
        shares (:func:`~mllmrec_pyg.llm.runner.run_summary`), then the
        preference source, the :func:`~mllmrec_pyg.data.split_fingerprint`
        of the training edges, the users and the history policy."""
        raw_users = data['user'].raw_id
        policy = self.prompts.policy
        return {
            **run_summary(data, self.backend, self.result, self.seconds),
            'preference_source': self.prompts.source,
            'leak_warning': (None if self.prompts.source == 'train' else
                             'built from the FULL history (valid/test '
                             'included): metrics using these are leaked'),
            'split_fingerprint': split_fingerprint(data),
            'users': len(self.prompts.prompts),
            'preferences': len(self.result.texts),
            'pending_users': len(self.result.pending),
            'failed_users': {raw_users[int(u)]: error for u, error in
                             self.result.failures.items()},
            'skipped_users': [raw_users[u]
                              for u in self.prompts.skipped_users],
            'history_policy': {
                'ordering': self.prompts.ordering,
                'max_items': policy.max_items,
                'max_prompt_words': policy.max_prompt_words,
                'seed': policy.seed,
                'users_truncated': self.prompts.truncated_users,
            },
            'system_prompt': self.prompts.system,
            'runaway_cut': self.runaway_cut,
            'quality': self.quality(),
            **self.extra,
        }

    def write(self, data: HeteroData, out: str) -> None:
        r"""Writes :obj:`out/preferences.tsv` (:obj:`user`,
        :obj:`preference`, :obj:`preference_source`,
        :obj:`split_fingerprint`), :obj:`out/prompts.jsonl` and
        :obj:`out/summary.json`, with ids as in the dataset's files.

        :func:`~mllmrec_pyg.llm.outputs.read_preferences_tsv` refuses the
        file on a dataset whose training edges differ."""
        os.makedirs(out, exist_ok=True)
        raw_users = data['user'].raw_id
        raw_items = data['item'].raw_id
        source = self.prompts.source
        fingerprint = split_fingerprint(data)
        texts = self.preferences()
        write_tsv(os.path.join(out, 'preferences.tsv'),
                  PREFERENCE_COLUMNS,
                  ([raw_users[p.user], texts[p.user], source, fingerprint]
                   for p in self.prompts.prompts if p.user in texts))
        with open(os.path.join(out, 'prompts.jsonl'), 'w',
                  encoding='utf-8') as f:
            for p in self.prompts.prompts:
                f.write(json.dumps({
                    'user': raw_users[p.user],
                    'item_ids': [raw_items[i] for i in p.item_indices],
                    'history': p.history,
                    'preference_source': source,
                    'prompt': p.prompt,
                }, ensure_ascii=False) + '\n')
        write_json(os.path.join(out, 'summary.json'), self.summary(data))


def generate_preferences(
    data: HeteroData,
    backend: GenerationBackend,
    cache: GenerationCache,
    descriptions: Sequence[str],
    source: HistorySource = 'train',
    policy: HistoryPolicy = HistoryPolicy(),
    template: PreferencePrompt = PreferencePrompt(),
    users: Optional[Sequence[int]] = None,
    progress: bool = True,
    cached_only: bool = False,
    runaway_cut: bool = True,
) -> PreferenceRun:
    r"""Builds the prompts (:func:`build_preference_prompts`) and completes
    them with :obj:`backend` through :obj:`cache` (finished users cost no
    call; each new preference is committed as it arrives).

    Args:
        data (HeteroData): The dataset.
        backend (GenerationBackend): A text backend.
        cache (GenerationCache): The generation cache.
        descriptions (Sequence[str]): :math:`D_m^i` per item.
        source (str, optional): :obj:`"train"` or :obj:`"full_history"`.
            (default: :obj:`"train"`)
        policy (HistoryPolicy, optional): Ordering and caps.
        template (PreferencePrompt, optional): Prompt2 and its system
            message. (default: :obj:`PreferencePrompt()`, Prompt2 after
            :obj:`~mllmrec_pyg.llm.prompts.PREFERENCE_SYSTEM_PROMPT`)
        users (Sequence[int], optional): User indices. (default: all)
        progress (bool, optional): Show a progress bar.
            (default: :obj:`True`)
        cached_only (bool, optional): Make no call; users not in the cache
            are counted as pending. (default: :obj:`False`)
        runaway_cut (bool, optional): Cut repetition loops and runaway lists
            off the texts (:func:`~mllmrec_pyg.llm.quality.cut_runaway`).
            (default: :obj:`True`)
    """
    started = time.perf_counter()
    prompts = build_preference_prompts(data, descriptions, source, policy,
                                       template, users)
    jobs = [(str(p.user), GenerationRequest(p.prompt, system=template.system))
            for p in prompts.prompts]
    label = 'preferences' + (' [FULL HISTORY: LEAKED]'
                             if source == 'full_history' else '')
    result = run_requests(backend, cache, 'prefer', jobs, progress=progress,
                          description=label, cached_only=cached_only)
    return PreferenceRun(prompts=prompts, result=result, backend=backend,
                         seconds=time.perf_counter() - started,
                         runaway_cut=runaway_cut)
