r"""``mllmrec prefer DATASET_PATH --out DIR``: user preferences (Prompt2)
from the descriptions of each user's TRAINING items.

By default Prompt2 is sent after a system message asking for prose
(:obj:`~mllmrec_pyg.llm.prompts.PREFERENCE_SYSTEM_PROMPT`), with the
``guarded`` decoding (:mod:`~mllmrec_pyg.llm.backends.decoding`), and
repetition loops and runaway lists are cut off the texts written
(:func:`~mllmrec_pyg.llm.quality.cut_runaway`); ``--system-prompt none
--decoding legacy --no-runaway-cut`` is the behaviour of earlier versions.
``summary.json`` holds a quality report of the preferences written.

``--shard I/N`` (1-based) takes shard :math:`I` of :math:`N` of the users
the other options chose (:mod:`~mllmrec_pyg.llm.shard`, a stable hash of the
raw user id); its ``preferences.tsv`` and ``prompts.jsonl`` hold that
shard's users only, and its ``summary.json`` records ``shard: "I/N"`` and
``shard_selection`` (the users of the shard, of all candidates).  The
union of the shards' ``--cache`` files (``mllmrec cache merge``) lets the
unsharded command write every user's preference without a call.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Mapping, Optional, Sequence

from mllmrec_pyg.cli._llm_options import (
    add_backend_options,
    add_preference_options,
    add_shard_option,
    open_cache_and_backend,
    positive_int,
    shard,
    system_prompt,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'prefer', help='generate user preferences with an LLM (Prompt2)',
        description='Generate one preference per user from the descriptions '
        "of the user's TRAINING items (Prompt2), through a content-addressed "
        'cache: a rerun makes no call for finished users. The item '
        'descriptions are those `mllmrec run` encodes (cut to the encoder\'s '
        'token budget), so both give the same prompts. Writes '
        'DIR/preferences.tsv (with the split fingerprint of the training '
        'edges; the file is refused on another split), DIR/prompts.jsonl and '
        'DIR/summary.json (with a quality report: repeated 3-grams, distinct-2, '
        'token-cap hits, boilerplate openings, lists, length). With --shard '
        "I/N only that shard's users are generated and written. By default "
        'Prompt2 goes after a system message asking for prose, decoding is '
        "'guarded' and runaway loops and lists are cut; '--decoding legacy "
        "--system-prompt none --no-runaway-cut' is the behaviour of earlier "
        'versions.')
    p.add_argument('path', metavar='DATASET_PATH',
                   help="a dataset folder or 'synthetic[:...]'")
    p.add_argument('--out', required=True, metavar='DIR')
    p.add_argument('--max-users', type=int, default=None,
                   help='only the first N users (by index)')
    p.add_argument('--user-sample', type=positive_int, default=None, metavar='N',
                   help='only N users drawn at random (seeded by --user-sample-seed, '
                   'the same N users every run); not with --max-users')
    p.add_argument('--user-sample-seed', type=int, default=0,
                   help='seed of --user-sample (default: 0)')
    add_shard_option(p, 'users')
    p.add_argument('--preference-source', choices=('train', 'full_history'),
                   default='train',
                   help="'train' (default): training items only; "
                   "'full_history' reproduces the reference's LEAKY protocol "
                   '(validation and test items included)')
    p.add_argument('--descriptions', default=None, metavar='TSV',
                   help='image descriptions from `mllmrec describe` '
                   '(descriptions.tsv) to append to the item text')
    p.add_argument('--max-items', type=positive_int, default=50,
                   help='most items listed per user (default: 50)')
    p.add_argument('--max-prompt-words', type=positive_int, default=1500,
                   help='most words per prompt (default: 1500)')
    p.add_argument('--max-description-words', type=int, default=None,
                   metavar='N',
                   help='opt-in, NOT the default: cut each item description '
                   'to N whitespace words; then the prompts differ from '
                   "`mllmrec run`'s (default: the encoder's cut, 254 "
                   'all-MiniLM-L6-v2 word pieces, as `mllmrec run`)')
    p.add_argument('--sample-seed', type=int, default=0,
                   help='seed of the item sample for users without '
                   'timestamps (default: 0)')
    p.add_argument('--template', default=None, metavar='FILE',
                   help="a Prompt2 override (text with '{list}')")
    add_preference_options(p)
    p.add_argument('--cached-only', action='store_true',
                   help='make no call: write the users the cache already '
                   'holds (e.g. while a long run goes on) and count the rest '
                   'as pending')
    add_backend_options(p, default_backend='smollm2')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.llm.outputs import read_descriptions_tsv
    from mllmrec_pyg.llm.prefer import (
        FullHistoryLeakWarning,
        HistoryPolicy,
        generate_preferences,
        sample_users,
    )
    from mllmrec_pyg.llm.prompts import PreferencePrompt
    from mllmrec_pyg.llm.text import WordTokenizer, prompt_item_descriptions

    if args.max_users is not None and args.max_users < 1:
        raise ValueError('--max-users must be >= 1')
    if args.max_users is not None and args.user_sample is not None:
        raise ValueError('--max-users and --user-sample both choose the users: '
                         'give one of them')
    if args.max_description_words is not None and \
            args.max_description_words < 1:
        raise ValueError('--max-description-words must be >= 1 (or left out '
                         "for the encoder's cut, as `mllmrec run`)")
    chosen = shard(args)
    system = system_prompt(args.system_prompt)
    data = load_dataset(args.path)
    images = (read_descriptions_tsv(args.descriptions, data)
              if args.descriptions else None)
    if args.max_description_words is None:
        # The same D_m^i as `mllmrec run`: the same prompts for the same users.
        composed = prompt_item_descriptions(data, images)
    else:
        composed = prompt_item_descriptions(
            data, images, tokenizer=WordTokenizer(),
            max_tokens=args.max_description_words)
    template = PreferencePrompt(system=system)
    if args.template:
        with open(args.template, encoding='utf-8') as f:
            template = PreferencePrompt(f.read(), system=template.system)
    policy = HistoryPolicy(max_items=args.max_items,
                           max_prompt_words=args.max_prompt_words,
                           seed=args.sample_seed)
    users: Optional[Sequence[int]] = None
    if args.max_users is not None:
        users = range(min(args.max_users, int(data['user'].num_nodes)))
    if args.user_sample is not None:
        users = sample_users(int(data['user'].num_nodes), args.user_sample,
                             args.user_sample_seed)
    candidates = 0
    if chosen is not None:
        raw_users = data['user'].raw_id
        candidates = len(raw_users) if users is None else len(users)
        users = chosen.select(raw_users, users)
    cache, backend = open_cache_and_backend(args)
    if args.preference_source == 'full_history':
        # Said before the (long) generation starts, and again at the end.
        print("WARNING: --preference-source full_history builds preferences "
              'from ALL interactions, validation and test items included: '
              'every metric computed with them is LEAKED.', file=sys.stderr,
              flush=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', FullHistoryLeakWarning)
            run_ = generate_preferences(
                data, backend, cache, composed.texts,
                source=args.preference_source, policy=policy,
                template=template, users=users,
                progress=not args.no_progress, cached_only=args.cached_only,
                runaway_cut=not args.no_runaway_cut)
        for warning in caught:
            print(f'WARNING: {warning.message}', file=sys.stderr)
            warnings.warn(warning.message, stacklevel=2)
        run_.extra['item_descriptions'] = {
            **composed.counts, **composed.settings,
            'image_descriptions': args.descriptions}
        run_.extra['prompt_template'] = template.template
        if args.user_sample is not None:
            run_.extra['user_sample'] = {'size': args.user_sample,
                                         'seed': args.user_sample_seed}
        if chosen is not None:
            run_.extra['shard'] = str(chosen)
            run_.extra['shard_selection'] = {'users': len(users or ()),
                                             'of': candidates}
        run_.write(data, args.out)
        if args.export_cache:
            cache.export(args.export_cache)
    finally:
        cache.close()
        backend.close()
    summary = run_.summary(data)
    print(f"{summary['preferences']}/{summary['users']} preferences "
          f"({summary['calls']} calls, {summary['cache_hits']} cache hits, "
          f"{summary['failures']} failures, {summary['pending_users']} "
          f"pending) -> {args.out}"
          + ('' if chosen is None else
             f' [shard {chosen}: {len(users or ())} of {candidates} users]'),
          file=sys.stderr)
    print(quality_line(summary['quality']), file=sys.stderr)
    return 0 if summary['failures'] == 0 else 1


def _percent(value: Any) -> str:
    return 'n/a' if value is None else f'{100 * value:.0f}%'


def quality_line(quality: Mapping[str, Any]) -> str:
    r"""The one-line quality note ``mllmrec prefer`` prints, e.g.
    :obj:`"quality of 8 preferences: 0% repeat a 3-gram 3+ times, distinct-2
    0.97, 12% hit the token cap, 0% open with boilerplate, 0% lists, 52
    words on average (details: summary.json)"`.

    Args:
        quality (Mapping[str, Any]): The :obj:`quality` block of
            :obj:`summary.json`
            (:meth:`~mllmrec_pyg.llm.prefer.PreferenceRun.quality`).
    """
    distinct = quality.get('mean_distinct_2')
    words = quality.get('mean_words')
    return (f"quality of {quality['outputs']} preferences: "
            f"{_percent(quality['repeated_3gram_share'])} repeat a 3-gram 3+ times, "
            f"distinct-2 {'n/a' if distinct is None else f'{distinct:.2f}'}, "
            f"{_percent(quality['token_cap_share'])} hit the token cap, "
            f"{_percent(quality['boilerplate_share'])} open with boilerplate, "
            f"{_percent(quality['list_share'])} lists, "
            f"{'n/a' if words is None else f'{words:.0f}'} words on average "
            '(details: summary.json)')
