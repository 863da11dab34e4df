r"""``mllmrec prefer DATASET_PATH --out DIR``: user preferences (Prompt2)
from the descriptions of each user's TRAINING items."""
from __future__ import annotations

import argparse
import sys
import warnings

from mllmrec_pyg.cli._llm_options import (
    add_backend_options,
    open_cache_and_backend,
    positive_int,
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
        'DIR/summary.json.')
    p.add_argument('path', metavar='DATASET_PATH',
                   help="a dataset folder or 'synthetic[:...]'")
    p.add_argument('--out', required=True, metavar='DIR')
    p.add_argument('--max-users', type=int, default=None,
                   help='only the first N users (by index)')
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
    )
    from mllmrec_pyg.llm.prompts import PreferencePrompt
    from mllmrec_pyg.llm.text import WordTokenizer, prompt_item_descriptions

    if args.max_users is not None and args.max_users < 1:
        raise ValueError('--max-users must be >= 1')
    if args.max_description_words is not None and \
            args.max_description_words < 1:
        raise ValueError('--max-description-words must be >= 1 (or left out '
                         "for the encoder's cut, as `mllmrec run`)")
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
    template = PreferencePrompt()
    if args.template:
        with open(args.template, encoding='utf-8') as f:
            template = PreferencePrompt(f.read())
    policy = HistoryPolicy(max_items=args.max_items,
                           max_prompt_words=args.max_prompt_words,
                           seed=args.sample_seed)
    users = None
    if args.max_users is not None:
        users = range(min(args.max_users, int(data['user'].num_nodes)))
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
                progress=not args.no_progress, cached_only=args.cached_only)
        for warning in caught:
            print(f'WARNING: {warning.message}', file=sys.stderr)
            warnings.warn(warning.message, stacklevel=2)
        run_.extra['item_descriptions'] = {
            **composed.counts, **composed.settings,
            'image_descriptions': args.descriptions}
        run_.extra['prompt_template'] = template.template
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
          f"pending) -> {args.out}", file=sys.stderr)
    return 0 if summary['failures'] == 0 else 1
