r"""``mllmrec describe DATASET_PATH --out DIR``: a semantic description of
every item image (Prompt1).

``--shard I/N`` (1-based) takes shard :math:`I` of :math:`N` of the items
the other options chose (:mod:`~mllmrec_pyg.llm.shard`, a stable hash of the
raw item id); its ``descriptions.tsv`` holds that shard's items only, and
its ``summary.json`` records ``shard: "I/N"`` and ``shard_selection``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from mllmrec_pyg.cli._llm_options import (
    add_backend_options,
    add_shard_option,
    open_cache_and_backend,
    positive_float,
    shard,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'describe', help='describe item images with an MLLM (Prompt1)',
        description='Describe every item image with a vision-language model '
        '(Prompt1, filled with the dataset domain), through a '
        'content-addressed cache: a rerun makes no call for finished items. '
        "Items without a usable image are skipped with the reason. Backend "
        "'image-stats' is a labelled NON-LLM fallback (image statistics as "
        'text). Writes DIR/descriptions.tsv and DIR/summary.json (with '
        "--shard I/N, of that shard's items only).")
    p.add_argument('path', metavar='DATASET_PATH',
                   help="a dataset folder or 'synthetic[:...]'")
    p.add_argument('--out', required=True, metavar='DIR')
    p.add_argument('--max-items', type=int, default=None,
                   help='only the first N items (by index)')
    add_shard_option(p, 'items')
    p.add_argument('--template', default=None, metavar='FILE',
                   help="a Prompt1 override (text; '{dataset name}' is "
                   'replaced by the domain)')
    p.add_argument('--image-timeout', type=positive_float, default=20.0,
                   help='seconds the whole download of one image URL may '
                   'take (default: 20)')
    p.add_argument('--max-image-mb', type=positive_float, default=20.0,
                   metavar='MB',
                   help='skip images larger than MB megabytes (2**20 bytes; '
                   'default: 20)')
    add_backend_options(p, default_backend='image-stats')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.llm.describe import describe_items
    from mllmrec_pyg.llm.prompts import DescriptionPrompt

    if args.max_items is not None and args.max_items < 1:
        raise ValueError('--max-items must be >= 1')
    chosen = shard(args)
    if args.backend == 'smollm2':
        raise ValueError("'smollm2' is a text model and cannot read images: "
                         'use --backend hf --model <a vision-language model>, '
                         '--backend openai with a vision model, or '
                         '--backend image-stats (a labelled non-LLM fallback)')
    data = load_dataset(args.path)
    template = DescriptionPrompt()
    if args.template:
        with open(args.template, encoding='utf-8') as f:
            template = DescriptionPrompt(f.read())
    items: Optional[Sequence[int]] = None
    if args.max_items is not None:
        items = range(min(args.max_items, int(data['item'].num_nodes)))
    candidates = 0
    if chosen is not None:
        raw_items = data['item'].raw_id
        candidates = len(raw_items) if items is None else len(items)
        items = chosen.select(raw_items, items)
    cache, backend = open_cache_and_backend(args)
    if not backend.is_llm:
        print(f"NOTE: backend '{backend.name}' is NOT an MLLM: descriptions "
              'are image statistics written as text', file=sys.stderr)
    try:
        run_ = describe_items(data, backend, cache, template, items,
                              progress=not args.no_progress,
                              image_timeout=args.image_timeout,
                              max_image_mb=args.max_image_mb)
        if chosen is not None:
            run_.extra['shard'] = str(chosen)
            run_.extra['shard_selection'] = {'items': len(run_.items),
                                             'of': candidates}
        run_.write(data, args.out)
        if args.export_cache:
            cache.export(args.export_cache)
    finally:
        cache.close()
        backend.close()
    summary = run_.summary(data)
    print(f"{summary['descriptions']}/{summary['items']} descriptions "
          f"({summary['calls']} calls, {summary['cache_hits']} cache hits, "
          f"{summary['failures']} failures, {summary['skipped']} skipped) -> "
          f'{args.out}'
          + ('' if chosen is None else
             f' [shard {chosen}: {len(run_.items)} of {candidates} items]'),
          file=sys.stderr)
    return 0 if summary['failures'] == 0 else 1
