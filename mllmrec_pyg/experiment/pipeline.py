r"""The whole MLLMRec pipeline as stages with content-keyed outputs:

describe (Prompt1: item images -> :math:`D_s`) -> prefer (Prompt2: each
user's TRAINING items -> :math:`P_u`) -> encode (all-MiniLM-L6-v2:
:math:`e_i, e_u`) -> graph -> train -> evaluate -> report.

Each stage is keyed by the hash of its inputs and settings
(:class:`~mllmrec_pyg.experiment.store.StageStore`); an up-to-date stage is
skipped, without loading its model: a second identical ``mllmrec run``
makes no LLM call and trains no epoch.  The last four stages are
:func:`~mllmrec_pyg.experiment.run_experiment`'s.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch_geometric.data import HeteroData

from mllmrec_pyg.llm.backends import GenerationBackend
from mllmrec_pyg.llm.cache import GenerationCache
from mllmrec_pyg.llm.prompts import PreferencePrompt
from mllmrec_pyg.llm.text import ItemDescriptions

from .config import ExperimentConfig
from .runner import ExperimentResult, _quiet, run_experiment
from .store import StageStore, UnreadableStageFile, content_key, load_stage_file

Log = Callable[[str], None]


class NoLLMPreferenceError(RuntimeError):
    r"""No user asked for got an LLM preference (every one fell back to the
    stand-in) and the stand-in was not allowed: ``mllmrec run`` exits 1."""
    exit_code = 1


def _warn(store: Optional[StageStore], message: str) -> None:
    if store is not None:
        store.warn(message)
    else:
        warnings.warn(message, stacklevel=3)


def _read_back(store: Optional[StageStore], stage: str, read: Callable[[], Any]) -> Any:
    r"""Reads the outputs of an up-to-date :obj:`stage` with :obj:`read`;
    an unreadable output makes the stage stale (a one-line warning) and
    returns :obj:`None`."""
    assert store is not None
    try:
        return read()
    except PermissionError:
        raise
    except Exception as exc:  # whatever a corrupt or truncated file raises
        why = str(exc) if isinstance(exc, UnreadableStageFile) else (
            f'its outputs are unreadable ({type(exc).__name__})')
        store.stale(stage, why)
        return None


@dataclass
class BackendSpec:
    r"""A generation backend by its settings, built only when a stage runs
    (so an up-to-date stage never loads a model).

    Args:
        name (str): A backend of :func:`~mllmrec_pyg.llm.backends.make_backend`.
        model (str, optional): Its model. (default: :obj:`None`)
        base_url (str, optional): Its server(s); not part of the key (servers
            of one model are interchangeable). (default: :obj:`None`)
        options (Dict[str, Any], optional): Further arguments; transport
            settings (concurrency, timeouts) are not part of the key.
            (default: :obj:`{}`)
    """
    name: str
    model: Optional[str] = None
    base_url: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)

    #: Options that change how requests travel, never what they return.
    TRANSPORT = ('max_concurrency', 'timeout', 'num_threads')

    def key(self) -> Optional[Dict[str, Any]]:
        r"""The backend's part of a stage key, or :obj:`None` when the
        settings do not determine the outputs (an OpenAI-compatible server
        whose model is not named: the stage then always runs, and the
        generation cache makes finished work free)."""
        if self.name == 'openai' and not self.model:
            return None
        return {'name': self.name, 'model': self.model,
                'options': {k: v for k, v in self.options.items()
                            if k not in self.TRANSPORT and v is not None}}

    def build(self) -> GenerationBackend:
        from mllmrec_pyg.llm.backends import make_backend
        return make_backend(self.name, model=self.model, base_url=self.base_url,
                            **self.options)


def _stage_fresh(store: Optional[StageStore], stage: str, key: Optional[str],
                 outputs: Sequence[str]) -> bool:
    return store is not None and key is not None and store.is_fresh(stage, key, outputs)


def _as_backend(backend: Union[GenerationBackend, BackendSpec]) -> Tuple[GenerationBackend, bool]:
    if isinstance(backend, BackendSpec):
        return backend.build(), True
    return backend, False


def _backend_key(backend: Union[GenerationBackend, BackendSpec]) -> Optional[Any]:
    return backend.key() if isinstance(backend, BackendSpec) else backend.identity()


def item_content_key(data: HeteroData) -> str:
    r"""The content key of the items' ids, text and images."""
    item = data['item']
    return content_key(list(item.raw_id), getattr(item, 'text', None),
                       getattr(item, 'image', None), str(getattr(data, 'domain', '')))


# --------------------------------------------------------------------------
# The reasoning stages.
# --------------------------------------------------------------------------

def describe_stage(data: HeteroData, backend: Union[GenerationBackend, BackendSpec],
                   cache: GenerationCache, out: str, store: Optional[StageStore] = None,
                   progress: bool = True) -> Tuple[Dict[int, str], Dict[str, Any]]:
    r"""Prompt1: describes the item images into :obj:`out/describe/` (or
    reads them back when up to date) and returns the descriptions per item
    index and how they were made."""
    from mllmrec_pyg.llm.describe import describe_items
    from mllmrec_pyg.llm.outputs import read_descriptions_tsv

    folder = os.path.join(out, 'describe')
    backend_key = _backend_key(backend)
    key = None if backend_key is None else content_key('describe', item_content_key(data),
                                                       backend_key)
    files = [os.path.join('describe', f) for f in ('descriptions.tsv', 'summary.json')]
    def read() -> Tuple[Dict[int, str], str, bool]:
        with open(os.path.join(folder, 'summary.json'), encoding='utf-8') as f:
            summary = json.load(f)
        texts = read_descriptions_tsv(os.path.join(folder, 'descriptions.tsv'), data)
        return texts, summary['backend'], bool(summary['is_llm'])

    stored = _read_back(store, 'describe', read) if _stage_fresh(
        store, 'describe', key, files) else None
    if stored is not None:
        descriptions, name, is_llm = stored
    else:
        if store is not None:
            store.invalidate('describe')
        built, owned = _as_backend(backend)
        try:
            run = describe_items(data, built, cache, progress=progress)
            run.write(data, folder)
            descriptions = run.descriptions()
            name, is_llm = built.name, built.is_llm
        finally:
            if owned:
                built.close()
        failed = len(run.result.failures)
        if failed:
            # Not recorded as finished: a rerun retries the failed items.
            _warn(store, f'describe: {failed} items got no image description ({failed} '
                  f'failures; see {os.path.join(folder, "summary.json")}); a rerun '
                  'retries them')
        elif store is not None and key is not None:
            store.finish('describe', key)
    label = (f'image descriptions by {name}' + ('' if is_llm else
             ' (NOT an MLLM: a non-LLM image-statistics fallback)'))
    return descriptions, {'described_by': label, 'items_described': len(descriptions)}


def prefer_stage(data: HeteroData, backend: Union[GenerationBackend, BackendSpec],
                 cache: GenerationCache, items: ItemDescriptions, out: str,
                 store: Optional[StageStore] = None, source: str = 'train',
                 users: Optional[Sequence[int]] = None, progress: bool = True,
                 template: Optional[PreferencePrompt] = None, runaway_cut: bool = True
                 ) -> Tuple[Dict[int, str], Dict[str, Any]]:
    r"""Prompt2: user preferences from the descriptions :obj:`items` of each
    user's TRAINING items (or the LEAKY full history) into
    :obj:`out/prefer/` (or read back when up to date); returns the
    preference per user index and the run's summary.

    The stage key holds everything that makes the texts written: the split,
    the item descriptions, the backend's settings (its decoding preset and
    server fields among them), the source, the users, Prompt2 and its
    system message (:obj:`template`, default :obj:`PreferencePrompt()`), the
    history policy and :obj:`runaway_cut`; not :obj:`progress`."""
    from dataclasses import asdict

    from mllmrec_pyg.data import split_fingerprint
    from mllmrec_pyg.llm.outputs import read_preferences_tsv
    from mllmrec_pyg.llm.prefer import HistoryPolicy, generate_preferences

    template = template or PreferencePrompt()
    policy = HistoryPolicy()
    folder = os.path.join(out, 'prefer')
    backend_key = _backend_key(backend)
    key = None if backend_key is None else content_key(
        'prefer', split_fingerprint(data), items.texts, backend_key, source,
        None if users is None else list(users),
        {'prompt': template.template, 'system_prompt': template.system,
         'history_policy': asdict(policy), 'runaway_cut': runaway_cut})
    files = [os.path.join('prefer', f) for f in ('preferences.tsv', 'summary.json')]

    def read() -> Tuple[Dict[int, str], Dict[str, Any]]:
        with open(os.path.join(folder, 'summary.json'), encoding='utf-8') as f:
            summary = dict(json.load(f))
        texts, _ = read_preferences_tsv(os.path.join(folder, 'preferences.tsv'), data)
        return texts, summary

    stored = _read_back(store, 'prefer', read) if _stage_fresh(
        store, 'prefer', key, files) else None
    if stored is not None:
        return stored[0], {**stored[1], 'stage_key': key}
    if store is not None:
        store.invalidate('prefer')
    built, owned = _as_backend(backend)
    try:
        prefs = generate_preferences(data, built, cache, items.texts, source=source,  # type: ignore[arg-type]
                                     policy=policy, template=template, users=users,
                                     progress=progress, runaway_cut=runaway_cut)
        prefs.write(data, folder)
        summary = prefs.summary(data)
    finally:
        if owned:
            built.close()
    texts = prefs.preferences()
    output_key = key
    if summary.get('failures'):
        # Not recorded as finished: a rerun retries the failed users (the
        # cache answers the others), and the encode stage is keyed by what
        # this run produced, not by the settings alone.
        output_key = None if key is None else content_key('prefer-output', key,
                                                          sorted(texts.items()))
    elif store is not None and key is not None:
        store.finish('prefer', key)
    return texts, {**summary, 'stage_key': output_key}


def encode_stage(data: HeteroData, items: ItemDescriptions,
                 preferences: Optional[Mapping[int, str]], out: Optional[str] = None,
                 store: Optional[StageStore] = None, encoder: Any = None,
                 prefer_key: Optional[str] = None, progress: bool = False
                 ) -> Tuple[str, int]:
    r"""all-MiniLM-L6-v2 embeddings (Eq. 4-5): sets :obj:`data['item'].x`
    from the item descriptions and :obj:`data['user'].x` from the
    preferences (users without one: the mean of their training items), or
    reads both back from :obj:`out/encode/features.pt` when up to date.
    Returns the encoder's name and the number of users with an encoded
    preference.

    The key names the preferences by :obj:`prefer_key`, the prefer stage's
    key, when there is one: a rerun that reads ``preferences.tsv`` back
    (where each text is one line) then reuses the features encoded from
    the generations themselves, which sentence-transformers may embed
    differently in the last float bits (its batches are padded together).

    :obj:`progress` shows the default encoder's progress bar (an
    :obj:`encoder` passed in keeps its own setting); it is not part of the
    key."""
    from mllmrec_pyg.llm.encode import DEFAULT_ENCODER, TextEncoder
    from mllmrec_pyg.pipeline import (
        encode_item_texts,
        mean_of_training_items,
        preference_user_features,
    )

    name = encoder.name if encoder is not None else DEFAULT_ENCODER
    texts = {int(u): t for u, t in (preferences or {}).items()}
    from mllmrec_pyg.data import split_fingerprint

    key = content_key('encode', 'empty-text=zero', name, getattr(encoder, 'revision', None),
                      items.texts,
                      prefer_key or sorted(texts.items()), split_fingerprint(data))
    file = os.path.join('encode', 'features.pt')

    def read() -> Tuple[Any, Any, int]:
        assert store is not None
        stored = load_stage_file(store.path(file))
        try:
            item_x, user_x = stored['item_x'], stored['user_x']
            encoded = int(stored['encoded'])
        except (KeyError, TypeError, ValueError) as exc:
            raise UnreadableStageFile(f'{store.path(file)} holds no features') from exc
        if (item_x.size(0) != int(data['item'].num_nodes)
                or user_x.size(0) != int(data['user'].num_nodes)):
            raise UnreadableStageFile(f'{store.path(file)} holds features of another '
                                      'dataset')
        return item_x, user_x, encoded

    stored = _read_back(store, 'encode', read) if _stage_fresh(
        store, 'encode', key, [file]) else None
    if stored is not None:
        data['item'].x, data['user'].x = stored[0], stored[1]
        return name, stored[2]
    if store is not None:
        store.invalidate('encode')
    own = encoder is None
    encoder = encoder or TextEncoder(progress=progress)
    try:
        data['item'].x, items.counts['empty'] = encode_item_texts(encoder, items.texts)
        stand_in = mean_of_training_items(data, data['item'].x)
        if texts:
            data['user'].x, encoded = preference_user_features(data, texts, encoder, stand_in)
        else:
            data['user'].x, encoded = stand_in, 0
    finally:
        if own:
            encoder.close()
    if store is not None and out is not None:
        store.save_output(file, {'item_x': data['item'].x, 'user_x': data['user'].x,
                                 'encoded': encoded})
        store.finish('encode', key)
    return name, encoded


_SUMMARY_KEYS = ('backend', 'model', 'preference_source', 'calls', 'cache_hits', 'failures',
                 'tokens_per_second', 'all_outputs', 'seconds')


def reason(data: HeteroData, out: str, prefer: Union[GenerationBackend, BackendSpec, None],
           cache: GenerationCache, describe: Union[GenerationBackend, BackendSpec, None] = None,
           preference_source: str = 'train', users: Optional[Sequence[int]] = None,
           store: Optional[StageStore] = None, encoder: Any = None,
           progress: bool = True, allow_stand_in: bool = True,
           log: Log = _quiet, template: Optional[PreferencePrompt] = None,
           runaway_cut: bool = True) -> Dict[str, Any]:
    r"""The reasoning stages (describe, prefer, encode) on :obj:`data`:
    sets :obj:`data['item'].x` (:math:`e_i`, Eq. 4) and
    :obj:`data['user'].x` (:math:`e_u`, Eq. 5) and returns how they were
    made, for the run's report.

    The item descriptions of Prompt2 and of the encoder are the same texts,
    composed once by :func:`~mllmrec_pyg.llm.text.prompt_item_descriptions`
    (the function ``mllmrec prefer`` calls too).

    Args:
        data (HeteroData): The dataset.
        out (str): The run folder.
        prefer (GenerationBackend or BackendSpec, optional): The LLM writing
            user preferences; :obj:`None` uses the mean-of-training-items
            stand-in for every user.
        cache (GenerationCache): The generation cache.
        describe (GenerationBackend or BackendSpec, optional): Describes the
            item images (Prompt1). (default: :obj:`None`)
        preference_source (str, optional): :obj:`"train"`, or the LEAKY
            :obj:`"full_history"`. (default: :obj:`"train"`)
        users (Sequence[int], optional): The users who get an LLM
            preference. (default: :obj:`None`, all)
        store (StageStore, optional): Skips up-to-date stages.
            (default: :obj:`None`)
        encoder (TextEncoder, optional): An open encoder to use.
            (default: :obj:`None`, the default one, opened if needed)
        progress (bool, optional): Show progress bars (the default encoder's
            too; an :obj:`encoder` passed in keeps its own setting).
            (default: :obj:`True`)
        allow_stand_in (bool, optional): Go on when NO user asked for got an
            LLM preference (all use the stand-in); :obj:`False` raises
            :class:`NoLLMPreferenceError` before anything is encoded.
            (default: :obj:`True`)
        log (callable, optional): Receives the line saying how many users
            got an LLM preference. (default: silent)
        template (PreferencePrompt, optional): Prompt2 and its system
            message. (default: :obj:`None`, :obj:`PreferencePrompt()`:
            Prompt2 after :obj:`~mllmrec_pyg.llm.prompts.PREFERENCE_SYSTEM_PROMPT`)
        runaway_cut (bool, optional): Cut repetition loops and runaway lists
            off the preferences (:func:`~mllmrec_pyg.llm.quality.cut_runaway`).
            (default: :obj:`True`)
    """
    from mllmrec_pyg.llm.text import prompt_item_descriptions

    counts: Dict[str, Any] = {}
    images: Dict[int, str] = {}
    described_by = 'no image descriptions'
    if describe is not None and getattr(data['item'], 'image', None) is not None:
        images, info = describe_stage(data, describe, cache, out, store, progress)
        described_by = info['described_by']
        counts['items_described'] = info['items_described']
    if encoder is not None:
        items = prompt_item_descriptions(data, images, tokenizer=encoder.tokenizer,
                                         max_tokens=encoder.token_budget())
    else:
        items = prompt_item_descriptions(data, images)
    counts['item_descriptions'] = items.counts

    preferences: Optional[Dict[int, str]] = None
    summary: Dict[str, Any] = {}
    if prefer is not None:
        preferences, summary = prefer_stage(data, prefer, cache, items, out, store,
                                            preference_source, users, progress,
                                            template=template, runaway_cut=runaway_cut)
        asked = len(users) if users is not None else int(data['user'].num_nodes)
        check_preferences(preferences, summary, asked,
                          os.path.join(out, 'prefer', 'summary.json'), allow_stand_in, log)
    name, encoded = encode_stage(data, items, preferences, out, store, encoder,
                                 prefer_key=summary.get('stage_key'), progress=progress)
    item_features = f'{name} embeddings of D_m = item text + {described_by}'
    if prefer is None:
        return {'item_features': item_features,
                'user_features': ('stand-in: mean of the embeddings of each '
                                  "user's TRAINING items (no LLM preferences)"), **counts}
    counts['users_with_llm_preference'] = encoded
    counts['users_with_stand_in'] = int(data['user'].num_nodes) - encoded
    counts['preference_summary'] = {k: v for k, v in summary.items() if k in _SUMMARY_KEYS}
    source = ('TRAINING items' if preference_source == 'train' else
              'FULL history (val/test included: LEAKED)')
    model = f" ({summary['model']})" if summary.get('model') else ''
    user_features = (f"{name} embeddings of {summary.get('backend')}{model} preferences "
                     f'from {source}; users without one use the mean of their '
                     'training items')
    return {'item_features': item_features, 'user_features': user_features, **counts}


def check_preferences(preferences: Mapping[int, str], summary: Mapping[str, Any],
                      asked: int, summary_path: str, allow_stand_in: bool = True,
                      log: Log = _quiet) -> int:
    r"""Says how many of the :obj:`asked` users got an LLM preference and
    how many fell back to the stand-in (a warning when some did), and
    raises :class:`NoLLMPreferenceError` when none got one, unless
    :obj:`allow_stand_in`.  Returns the number that got one."""
    got = sum(1 for text in preferences.values() if text and text.strip())
    failures = int(summary.get('failures') or 0)
    fell_back = max(asked - got, 0)
    if asked and got == 0 and not allow_stand_in:
        raise NoLLMPreferenceError(
            f'no user got an LLM preference: 0/{asked} users, all fell back to the '
            f'stand-in ({failures} failures; see {summary_path}); fix the preference '
            'backend and rerun (finished generations are kept), or pass --allow-stand-in '
            'to train on the stand-in')
    line = (f'preferences: {got}/{asked} users got an LLM preference, {fell_back} fell '
            f'back to the stand-in ({failures} failures; see {summary_path})')
    log(f'warning: {line}' if got < asked else line)
    return got


def run_pipeline(
    data: Union[HeteroData, str, None],
    config: ExperimentConfig,
    out_dir: str,
    *,
    describe: Optional[BackendSpec] = None,
    prefer: Optional[BackendSpec] = None,
    users: Optional[Sequence[int]] = None,
    preference_source: str = 'train',
    cache: Optional[str] = None,
    force: Sequence[str] = (),
    device: Optional[str] = None,
    progress: bool = True,
    until: Optional[str] = None,
    allow_stand_in: bool = False,
    log: Log = _quiet,
    template: Optional[PreferencePrompt] = None,
    runaway_cut: bool = True,
) -> Optional[ExperimentResult]:
    r"""``mllmrec run``: the reasoning stages, then
    :func:`~mllmrec_pyg.experiment.run_experiment` for the graph, training,
    evaluation and report, all in :obj:`out_dir` with up-to-date stages
    skipped.

    Args:
        data (HeteroData or str, optional): The dataset or its path
            (:obj:`None`: :obj:`config.dataset['path']`).
        config (ExperimentConfig): The resolved config (model MLLMRec).
        out_dir (str): The run folder.
        describe (BackendSpec, optional): The image describer.
            (default: :obj:`None`, no image descriptions)
        prefer (BackendSpec, optional): The preference LLM.
            (default: :obj:`None`, the stand-in for every user)
        users (Sequence[int], optional): Users that get an LLM preference.
            (default: :obj:`None`, all)
        preference_source (str, optional): :obj:`"train"` or the LEAKY
            :obj:`"full_history"`. (default: :obj:`"train"`)
        cache (str, optional): The generation cache file.
            (default: :obj:`$MLLMREC_HOME/llm/generations.sqlite`)
        force (Sequence[str], optional): Stages to rerun (and all after).
            (default: :obj:`()`)
        device (str, optional): Where to train. (default: CUDA if available)
        progress (bool, optional): Show progress bars. (default: :obj:`True`)
        until (str, optional): The last stage to run (``describe``, ...,
            ``report``); earlier stops return :obj:`None`.
            (default: :obj:`None`, all)
        allow_stand_in (bool, optional): Go on when no user asked for got an
            LLM preference; by default that raises
            :class:`NoLLMPreferenceError` before encoding and training.
            (default: :obj:`False`)
        log (callable, optional): One-line messages. (default: silent)
        template (PreferencePrompt, optional): Prompt2 and its system
            message, part of the prefer stage's key. (default: :obj:`None`,
            :obj:`PreferencePrompt()`)
        runaway_cut (bool, optional): Cut repetition loops and runaway lists
            off the preferences; part of the prefer stage's key.
            (default: :obj:`True`)

    The run folder, :obj:`$MLLMREC_HOME` and the cache are checked before
    anything is loaded, generated or trained.
    """
    from .runner import check_home, load_experiment_data, prepare_experiment
    from .store import STAGES, check_out_dir

    if until is not None and until not in STAGES:
        raise ValueError(f"unknown stage '{until}' (stages: {', '.join(STAGES)})")
    check_out_dir(out_dir)
    check_home('processed datasets and caches')
    if cache is not None:
        check_cache_path(cache)

    if data is None or isinstance(data, str):
        data = load_experiment_data(config, data)
    store = StageStore(out_dir, force=force, log=log)
    generation_cache = GenerationCache(cache)  # one-line ValueError if unusable
    try:
        inputs = reason(data, out_dir, prefer, generation_cache, describe=describe,
                        preference_source=preference_source, users=users, store=store,
                        progress=progress, allow_stand_in=allow_stand_in, log=log,
                        template=template, runaway_cut=runaway_cut)
    finally:
        generation_cache.close()
    if until in ('describe', 'prefer', 'encode'):
        return None
    if until == 'graph':
        prepare_experiment(data, config, store, inputs, progress=progress)
        return None
    result = run_experiment(data, config, out_dir, inputs=inputs, force=force,
                            device=device, progress=progress, log=log)
    result.stages_run = store.ran + result.stages_run
    result.stages_skipped = store.skipped + result.stages_skipped
    return result


def check_cache_path(path: str) -> None:
    r"""Checks that the generation cache :obj:`path` is a file that can be
    written (or created) in a writable folder: a one-line
    :class:`ValueError` naming it otherwise."""
    from mllmrec_pyg.utils.paths import existing_ancestor

    from .store import _is_writable_folder

    if os.path.isdir(path):
        raise ValueError(f'--cache {path}: is a folder, not a cache file; name a file, '
                         'e.g. generations.sqlite')
    folder = existing_ancestor(os.path.dirname(os.path.abspath(path)))
    if not _is_writable_folder(folder):
        raise ValueError(f'--cache {path}: {folder} is not a writable folder; name a cache '
                         'file in a writable folder')
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise ValueError(f'--cache {path}: the file is not writable; name a writable '
                         'cache file or fix its permissions')


def first_users(spec: Union[str, int, None], num_users: int) -> Optional[List[int]]:
    r"""The users of ``--llm-users``: :obj:`"all"` (:obj:`None`) or the
    first :obj:`spec` user indices."""
    if spec is None or spec == 'all':
        return None
    try:
        count = int(spec)
    except ValueError:
        raise ValueError(f"--llm-users must be a number or 'all' (got {spec!r})") from None
    if count < 0:
        raise ValueError(f'--llm-users must be >= 0 (got {count})')
    return list(range(min(count, num_users)))
