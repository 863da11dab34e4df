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
from typing import Optional, Tuple

from mllmrec_pyg.cli._llm_options import (
    add_decoding_options,
    add_http_options,
    add_preference_options,
    backend_options,
    positive_int,
    server_params,
    system_prompt,
)
from mllmrec_pyg.cli.train import (
    add_config_options,
    add_run_options,
    print_result,
    say,
    shortcut_overrides,
)
from mllmrec_pyg.experiment.pipeline import BackendSpec
from mllmrec_pyg.llm.backends import BACKENDS

#: The stage each pipeline sub-command stops after.
UNTIL = {'encode': 'encode', 'graph': 'graph', 'evaluate': 'evaluate'}


#: The pipeline commands: name -> (help, description).
COMMANDS = {
    'run': ('the whole MLLMRec pipeline: describe, prefer, encode, graph, train, evaluate, '
            'report',
            'Run MLLMRec end to end on a dataset (default: the embedded generated catalogue '
            "'synthetic'): describe item images, write user preferences from training "
            'items, encode both with all-MiniLM-L6-v2, build the refined item graph, train '
            'MLLMRec with early stopping on validation Recall@20 and report the test metrics '
            'of the best epoch. Every stage is keyed by its inputs and settings and skipped '
            'when up to date: a rerun with nothing changed makes no LLM call and trains '
            'nothing.'),
    'encode': ('the pipeline up to the encode stage (describe, prefer, encode)',
               'Run the stages of `mllmrec run` up to encode: OUT/encode/features.pt holds '
               'the all-MiniLM-L6-v2 item and user features.'),
    'graph': ('the pipeline up to the refined item graph',
              'Run the stages of `mllmrec run` up to graph: OUT/graph/item_graph.pt holds '
              'the refined item graph (Eq. 6-11).'),
    'evaluate': ('the pipeline up to the evaluation (no report)',
                 'Run the stages of `mllmrec run` up to evaluate: metrics.json, '
                 'topk_test.tsv and the per-user files.'),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    for name, (help_, description) in COMMANDS.items():
        _add_pipeline_parser(subparsers.add_parser(name, help=help_,
                                                   description=description))


def _add_pipeline_parser(p: argparse.ArgumentParser) -> None:
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
    p.add_argument('--max-new-tokens', type=positive_int, default=96,
                   help='most tokens per generation (default: 96, short enough for the '
                   "default CPU run; 'mllmrec prefer' defaults to 160)")
    add_http_options(p)
    # The same options as `mllmrec prefer`'s; all of them are part of the
    # prefer stage's key (and --decoding and --server-param of describe's).
    add_decoding_options(p)
    add_preference_options(p)
    p.add_argument('--preference-source', choices=('train', 'full_history'),
                   default='train',
                   help="'train' (default) or the reference's LEAKY 'full_history'")
    p.add_argument('--cache', default=None,
                   help='generation cache (default: $MLLMREC_HOME/llm/generations.sqlite)')
    p.add_argument('--allow-stand-in', action='store_true',
                   help='go on when no user got an LLM preference (every preference call '
                   'failed) and train on the mean-of-training-items stand-in; by '
                   'default that stops the run with exit status 1')
    add_config_options(p)
    add_run_options(p)
    p.set_defaults(func=run)


def backend_specs(args: argparse.Namespace) -> Tuple[Optional[BackendSpec],
                                                   Optional[BackendSpec]]:
    r"""The describe and prefer backends of ``run`` (built only if their
    stage runs), both with ``--decoding``; ``--server-param`` goes to those
    of them that are :obj:`"openai"`.

    Raises:
        ValueError: If ``--server-param`` is given and neither backend is
            :obj:`"openai"`.
    """
    import torch

    threads = 1 if not torch.cuda.is_available() else None
    fields = server_params(args.server_param)
    names = (args.describe_backend, args.prefer_backend)
    if fields and 'openai' not in names:
        raise ValueError("--server-param applies to an 'openai' backend only "
                         f"(--describe-backend '{names[0]}' and --prefer-backend "
                         f"'{names[1]}' send no HTTP request)")

    def spec(name: str, model: Optional[str]) -> Optional[BackendSpec]:
        if name == 'none':
            return None
        return BackendSpec(name, model, args.base_url, backend_options(
            name, args.max_new_tokens, args.concurrency, args.timeout, threads=threads,
            decoding=args.decoding, server_params=fields if name == 'openai' else None))

    describe = spec(args.describe_backend, args.describe_model)
    prefer = spec(args.prefer_backend, args.prefer_model)
    return describe, prefer


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.experiment import (
        build_config,
        check_out_dir,
        load_experiment_data,
        run_pipeline,
    )
    from mllmrec_pyg.experiment.pipeline import first_users
    from mllmrec_pyg.llm.prompts import PreferencePrompt

    check_out_dir(args.out)
    # Option errors before the dataset loads.
    template = PreferencePrompt(system=system_prompt(args.system_prompt))
    describe, prefer = backend_specs(args)
    config = build_config(args.path, recipe=args.recipe, config=args.config,
                          overrides=shortcut_overrides(args), model='mllmrec', log=say)
    data = load_experiment_data(config, args.path)
    users = first_users(args.llm_users, int(data['user'].num_nodes))
    if users == []:
        prefer = None
    result = run_pipeline(data, config, args.out, describe=describe, prefer=prefer,
                          users=users, preference_source=args.preference_source,
                          cache=args.cache, force=args.force, device=args.device,
                          progress=not args.no_progress, until=UNTIL.get(args.command),
                          allow_stand_in=args.allow_stand_in, log=say, template=template,
                          runaway_cut=not args.no_runaway_cut)
    if result is None:
        say(f'{args.command}: done -> {args.out}')
        return 0
    if result.stages_skipped:
        say(f'up to date, not rerun: {", ".join(result.stages_skipped)} '
            '(--force STAGE reruns one)')
    print_result(result)
    return 0
