r"""``mllmrec run [DATASET_PATH] --out DIR``: the whole MLLMRec pipeline.

Image descriptions (Prompt1) -> item descriptions :math:`D_m` -> user
preferences from TRAINING items (Prompt2) -> all-MiniLM-L6-v2 embeddings ->
the refined item graph -> MLLMRec trained with early stopping on validation
-> test metrics at the best validation epoch.

On the embedded default (``synthetic``) no vision model is available
offline, so images are described by the labelled non-LLM
``image-stats`` fallback unless ``--describe-backend`` names a VLM; user
preferences come from SmolLM2-135M on CPU for the first ``--llm-users``
users (a CPU-friendly default; ``--llm-users all`` for everyone), and every
other user is represented by the mean of the embeddings of its training
items.  ``metrics.json`` says exactly which users got what.

Outputs in :obj:`DIR`: ``describe/`` and ``prefer/`` (as ``mllmrec
describe`` / ``mllmrec prefer`` write them), then ``metrics.json``,
``topk_test.tsv``, ``log.csv`` and the per-user metric files of
``mllmrec train``.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from mllmrec_pyg.cli._llm_options import add_http_options
from mllmrec_pyg.llm.backends import BACKENDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'run', help='the whole MLLMRec pipeline: describe, prefer, encode, graph, train',
        description='Run MLLMRec end to end on a dataset (default: the embedded '
        "generated catalogue 'synthetic'): describe item images, write user "
        'preferences from training items, encode both with all-MiniLM-L6-v2, '
        'build the refined item graph, train MLLMRec with early stopping on '
        'validation Recall@20 and report the test metrics of the best epoch.')
    p.add_argument('path', metavar='DATASET_PATH', nargs='?', default='synthetic',
                   help="a dataset folder or 'synthetic[:users=N,items=M,seed=S]' "
                   '(default: synthetic)')
    p.add_argument('--out', required=True, metavar='DIR')
    p.add_argument('--describe-backend', choices=BACKENDS + ('none',),
                   default='image-stats',
                   help="image describer (default: 'image-stats', the labelled "
                   "non-LLM fallback; 'hf' or 'openai' for a real VLM)")
    p.add_argument('--describe-model', default=None,
                   help="VLM for 'hf' (a folder) or 'openai' (a served name)")
    p.add_argument('--prefer-backend', choices=('smollm2', 'openai', 'hf', 'none'),
                   default='smollm2',
                   help="preference LLM (default: 'smollm2', offline on CPU; "
                   "'none' uses the mean-of-training-items stand-in for all users)")
    p.add_argument('--prefer-model', default=None,
                   help="LLM for 'hf' (a folder) or 'openai' (a served name)")
    p.add_argument('--base-url', default=None,
                   help='API root of an OpenAI-compatible server (or '
                   '$MLLMREC_OPENAI_BASE_URL); the key comes from the environment only')
    p.add_argument('--llm-users', default='8',
                   help="how many users (the first, by index) get LLM preferences: "
                   "a number or 'all' (default: 8, so the default run takes "
                   'minutes on a CPU); the others use the stand-in')
    p.add_argument('--max-new-tokens', type=int, default=96,
                   help='most tokens per generation (default: 96, short enough for the '
                   "default CPU run; 'mllmrec prefer' defaults to 160)")
    add_http_options(p)
    p.add_argument('--preference-source', choices=('train', 'full_history'),
                   default='train',
                   help="'train' (default) or the reference's LEAKY 'full_history'")
    p.add_argument('--epochs', type=int, default=None,
                   help='maximum epochs (default: 1000, early stopping decides)')
    p.add_argument('--patience', type=int, default=None,
                   help='early-stopping patience (default: 20)')
    p.add_argument('--seed', type=int, default=2024, help='seed (default: 2024)')
    p.add_argument('--config', default=None, metavar='FILE',
                   help='as for `mllmrec train` (sections dataset, model, graph, train)')
    p.add_argument('--cache', default=None,
                   help='generation cache (default: $MLLMREC_HOME/llm/generations.sqlite)')
    p.add_argument('--device', default=None, help="'cpu' or 'cuda'")
    p.add_argument('--no-progress', action='store_true', help='hide progress bars')
    p.set_defaults(func=run)


def _first_users(spec: str, num_users: int) -> Optional[Sequence[int]]:
    if spec == 'all':
        return None
    try:
        count = int(spec)
    except ValueError:
        raise ValueError(f"--llm-users must be a number or 'all' (got {spec!r})") from None
    if count < 0:
        raise ValueError(f'--llm-users must be >= 0 (got {count})')
    return list(range(min(count, num_users)))


def run(args: argparse.Namespace) -> int:
    import torch

    from mllmrec_pyg.cli.train import fit_and_report, load_config
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.llm.backends import make_backend
    from mllmrec_pyg.llm.cache import GenerationCache
    from mllmrec_pyg.llm.encode import TextEncoder
    from mllmrec_pyg.pipeline import reason_and_encode

    config = load_config(args.config)
    data = load_dataset(args.path, **config.get('dataset', {}))
    os.makedirs(args.out, exist_ok=True)
    users = _first_users(args.llm_users, int(data['user'].num_nodes))
    threads = 1 if not torch.cuda.is_available() else None

    openai_options = dict(max_tokens=args.max_new_tokens, max_concurrency=args.concurrency,
                          timeout=args.timeout)
    describe_backend = None
    if args.describe_backend != 'none':
        options = {}
        if args.describe_backend in ('hf', 'smollm2'):
            options = dict(max_new_tokens=args.max_new_tokens, num_threads=threads)
        elif args.describe_backend == 'openai':
            options = openai_options
        describe_backend = make_backend(args.describe_backend, model=args.describe_model,
                                        base_url=args.base_url, **options)
    prefer_backend = None
    if args.prefer_backend != 'none' and users != []:
        options = (openai_options if args.prefer_backend == 'openai'
                   else dict(max_new_tokens=args.max_new_tokens, num_threads=threads))
        prefer_backend = make_backend(args.prefer_backend, model=args.prefer_model,
                                      base_url=args.base_url, **options)

    cache = GenerationCache(args.cache)
    encoder = TextEncoder()
    try:
        inputs = reason_and_encode(data, args.out, prefer_backend, cache, encoder,
                                   describe_backend=describe_backend,
                                   preference_source=args.preference_source,
                                   users=users, progress=not args.no_progress)
    finally:
        encoder.close()
        cache.close()
        for backend in (describe_backend, prefer_backend):
            if backend is not None:
                backend.close()

    train_args = argparse.Namespace(
        path=args.path, model='mllmrec', out=args.out, epochs=args.epochs,
        seed=args.seed, config=args.config, patience=args.patience,
        exclude_valid_at_test=False, device=args.device, resume=False,
        deterministic=False, tensorboard=False, no_progress=args.no_progress)
    return fit_and_report(data, train_args, config, reasoning=inputs.as_dict())
