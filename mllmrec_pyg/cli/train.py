r"""``mllmrec train DATASET_PATH --model NAME --out DIR``: train a recommender
with early stopping on validation Recall@20 and report the test metrics of
the best validation epoch.

Outputs in :obj:`DIR` (the first two are a contract read by independent
checks):

* ``metrics.json``: ``valid`` and ``test`` metrics (MMRec's definitions,
  keys such as ``recall@20``) at the best validation epoch, ``epoch`` (that
  epoch, 1-based; also ``best_epoch``), the settings, the evaluation
  protocol and timings;
* ``topk_test.tsv``: a header line, then one row per evaluated test user:
  the user id and the top-50 item ids (training items excluded; validation
  items too with ``--exclude-valid-at-test``), ids as in the dataset's
  files (``data['user'].raw_id`` / ``data['item'].raw_id``);
* ``per_user_valid.npz`` / ``per_user_test.npz``: per-user metrics for
  :func:`mllmrec_pyg.metrics.paired_t_test`;
* ``log.csv`` (per-epoch metrics) and ``checkpoint.pt`` (for ``--resume``);
  with a ``grid`` in the config, ``grid.csv``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

#: Models the command trains (see :func:`mllmrec_pyg.nn.models.build_model`).
MODEL_CHOICES = ('mllmrec', 'lightgcn', 'bpr', 'vbpr')
#: Sections a ``--config`` file may have.
CONFIG_SECTIONS = ('dataset', 'model', 'graph', 'train', 'grid')
#: Keys of the ``train`` section, passed to :class:`mllmrec_pyg.train.Trainer`.
TRAIN_KEYS = ('lr', 'weight_decay', 'batch_size', 'max_epochs', 'patience', 'valid_metric',
              'ks', 'eval_batch_size', 'all_items_negatives', 'checkpoint_every')
#: The paper's item-graph settings per dataset keyword (K_s, alpha, K_c).
PAPER_GRAPH = {'baby': (10, 0.7, 10), 'sports': (10, 0.4, 10), 'clothing': (10, 0.6, 15)}
#: Length of the ranked lists of ``topk_test.tsv``.
TOPK_FILE_K = 50

USER_STAND_IN = ('stand-in: mean of the MiniLM embeddings of each user\'s TRAINING items '
                 '(no LLM-reasoned preferences yet)')


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        'train', help='train a recommender and evaluate it (metrics.json, topk_test.tsv)',
        description='Train MLLMRec or a baseline with BPR, early stopping on validation '
        'Recall@20 (patience 20, max 1000 epochs), and write the valid and test metrics '
        'of the best validation epoch to OUT/metrics.json and the top-50 test '
        'recommendations to OUT/topk_test.tsv. DATASET_PATH is a dataset folder or '
        "'synthetic[:users=N,items=M,seed=S]'.")
    p.add_argument('path', metavar='DATASET_PATH')
    p.add_argument('--model', required=True, choices=MODEL_CHOICES)
    p.add_argument('--out', required=True, metavar='DIR', help='output folder')
    p.add_argument('--epochs', type=int, default=None,
                   help='maximum number of epochs (default: 1000, or the config)')
    p.add_argument('--seed', type=int, default=2024, help='seed of everything (default: 2024)')
    p.add_argument('--config', default=None, metavar='FILE',
                   help='JSON or YAML with sections dataset, model, graph, train, grid '
                   '(e.g. {"model": {"reg_weight": 1e-4}, "graph": {"alpha": 0.4}})')
    p.add_argument('--patience', type=int, default=None, help='early-stopping patience '
                   '(default: 20)')
    p.add_argument('--exclude-valid-at-test', action='store_true',
                   help='also exclude validation items when ranking for the test split '
                   '(default: off, as MMRec)')
    p.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if "
                   'available)')
    p.add_argument('--preferences', default=None, metavar='TSV',
                   help="user features for --model mllmrec: the preferences.tsv of "
                   "`mllmrec prefer`, encoded by all-MiniLM-L6-v2 (users without one keep "
                   "the mean of their training items); a full_history file is LEAKED and "
                   "labelled so (default: the training-items mean for every user)")
    p.add_argument('--resume', action='store_true',
                   help='continue from OUT/checkpoint.pt if present (with a grid: each '
                   'point from OUT/grid/run_<i>/checkpoint.pt)')
    p.add_argument('--deterministic', action='store_true',
                   help='ask PyTorch for deterministic kernels')
    p.add_argument('--tensorboard', action='store_true',
                   help='also log to TensorBoard in OUT/tb (needs tensorboard)')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    p.set_defaults(func=run)


def load_config(path: Optional[str]) -> Dict[str, Dict[str, Any]]:
    r"""Reads a ``--config`` file (JSON, or YAML for ``.yaml``/``.yml``)."""
    if path is None:
        return {}
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such config file')
    with open(path, encoding='utf-8') as f:
        if path.endswith(('.yaml', '.yml')):
            import yaml
            config = yaml.safe_load(f) or {}
        else:
            try:
                config = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f'{path}, line {exc.lineno}: invalid JSON ({exc.msg})') from exc
    if not isinstance(config, dict):
        raise ValueError(f'{path}: the config must be a mapping of sections '
                         f'({", ".join(CONFIG_SECTIONS)})')
    unknown = sorted(set(config) - set(CONFIG_SECTIONS))
    if unknown:
        raise ValueError(f'{path}: unknown section(s) {unknown}; the sections are '
                         f'{", ".join(CONFIG_SECTIONS)} (e.g. put reg_weight under "model")')
    for name, section in config.items():
        if not isinstance(section, dict):
            raise ValueError(f'{path}: section "{name}" must be a mapping')
    bad = sorted(set(config.get('train', {})) - set(TRAIN_KEYS))
    if bad:
        raise ValueError(f'{path}: unknown train setting(s) {bad} (known: {", ".join(TRAIN_KEYS)})')
    both = sorted(set(config.get('model', {})) & set(config.get('grid', {})))
    if both:
        raise ValueError(f'{path}: {both} appear in both "model" and "grid"; a setting is '
                         'either fixed (model) or searched (grid)')
    return config


def require_item_text(data: HeteroData) -> None:
    r"""Raises a clear error when the items have neither text nor features."""
    if not getattr(data['item'], 'text', None):
        raise ValueError(f'{data.name}: the items have no text to encode (data["item"].text '
                         'is absent) and no features data["item"].x; this model needs item '
                         'features')


def encode_items(data: HeteroData) -> Tensor:
    r"""Item features as ``mllmrec run`` computes them (without image
    descriptions): all-MiniLM-L6-v2 embeddings of the composed item
    descriptions, through the package's content-keyed encoding cache."""
    from mllmrec_pyg.llm.encode import TextEncoder
    from mllmrec_pyg.pipeline import encode_item_descriptions
    require_item_text(data)
    with TextEncoder() as encoder:
        return encode_item_descriptions(data, encoder)[0]


def prepare_inputs(data: HeteroData, model: str, model_cfg: Dict[str, Any],
                   graph_cfg: Dict[str, Any], preferences: Optional[str] = None
                   ) -> Tuple[HeteroData, Dict[str, Any]]:
    r"""Adds what :obj:`model` needs to :obj:`data` (item features, the user
    features: the encoded :obj:`preferences` file or the training-items
    stand-in, the refined item graph) and returns the data and a
    description of what was added."""
    info: Dict[str, Any] = {}
    if preferences is not None and (model != 'mllmrec' or
                                    model_cfg.get('user_init', 'features') != 'features'):
        raise ValueError('--preferences gives MLLMRec its user features: it needs '
                         "--model mllmrec with user_init 'features'")
    if model not in ('mllmrec', 'vbpr'):
        return data, info
    item = data['item']
    if model == 'vbpr' and (getattr(item, 'text_feat', None) is not None or (
            getattr(item, 'image_feat', None) is not None
            and getattr(item, 'x', None) is None and not getattr(item, 'text', None))):
        # MMRec's VBPR input: the dataset's own feature files (text_feat.npy,
        # image_feat.npy), text then image; the item text is encoded only
        # when there is no text_feat.
        own = [n for n in ('text_feat', 'image_feat') if getattr(item, n, None) is not None]
        info['item_features'] = "the dataset's " + ' + '.join(f'{n}.npy' for n in own)
        return data, info
    if getattr(data['item'], 'x', None) is None:
        data['item'].x = encode_items(data)
        info['item_features'] = ('all-MiniLM-L6-v2 embeddings of the item text fields '
                                 '(composed and cut to the encoder budget)')
    else:
        info['item_features'] = "data['item'].x of the dataset"
    if model == 'vbpr' and getattr(item, 'image_feat', None) is not None:
        info['item_features'] += " + the dataset's image_feat.npy"
    if model != 'mllmrec':
        return data, info
    if model_cfg.get('user_init', 'features') == 'features':
        from mllmrec_pyg.pipeline import mean_of_training_items
        if preferences is not None:
            info.update(_preference_features(data, preferences))
        elif getattr(data['user'], 'x', None) is None:
            data['user'].x = mean_of_training_items(data, data['item'].x)
            info['user_features'] = USER_STAND_IN
        else:
            info['user_features'] = "data['user'].x of the dataset"
    else:
        info['user_features'] = 'learnable ID embeddings (w/o reasoning)'
    if model_cfg.get('item_layers', 1) > 0:
        from mllmrec_pyg.transforms import RefineItemGraph
        transform = RefineItemGraph(**graph_cfg)
        start = time.perf_counter()
        data = transform(data)
        info['item_graph'] = str(transform)
        info['item_graph_time_s'] = round(time.perf_counter() - start, 3)
    return data, info


def _preference_features(data: HeteroData, path: str) -> Dict[str, Any]:
    r"""Sets :obj:`data['user'].x` from a :obj:`preferences.tsv` and returns
    how, warning loudly when the file was built from the full history."""
    from mllmrec_pyg.llm.encode import TextEncoder
    from mllmrec_pyg.llm.outputs import read_preferences_tsv
    from mllmrec_pyg.llm.prefer import FullHistoryLeakWarning
    from mllmrec_pyg.pipeline import mean_of_training_items, preference_user_features

    texts, sources = read_preferences_tsv(path, data)
    leaked = 'full_history' in sources
    if leaked:
        warnings.warn(f'{path} was generated from the FULL history (validation and test '
                      'items included): every metric of this run is LEAKED',
                      FullHistoryLeakWarning, stacklevel=2)
    with TextEncoder() as encoder:
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


def graph_defaults(path: str, graph_cfg: Dict[str, Any]) -> Dict[str, Any]:
    r"""The paper's K_s, alpha, K_c for the dataset, overridden by the config."""
    name = os.path.basename(os.path.normpath(path)).lower()
    knn_k, alpha, jaccard_k = next((v for k, v in PAPER_GRAPH.items() if k in name),
                                   (10, 0.4, 10))
    return {'knn_k': knn_k, 'alpha': alpha, 'jaccard_k': jaccard_k, **graph_cfg}


def topk_without_training(evaluator: Any, model: torch.nn.Module, users: Tensor,
                          k: int) -> List[List[int]]:
    r"""Top-:obj:`k` items of :obj:`users` with the test exclusions removed
    (a user with fewer candidates gets a shorter list)."""
    with torch.no_grad():
        model.eval()
        user_emb, item_emb = model.embed()  # type: ignore[operator]
        topk = evaluator.rank(user_emb, item_emb, users, exclude='test', k=k).cpu()
    excluded = evaluator.is_excluded('test', users.view(-1, 1).expand_as(topk), topk)
    return [row[~drop].tolist() for row, drop in zip(topk, excluded, strict=True)]


def write_topk(path: str, data: HeteroData, users: Tensor, lists: List[List[int]],
               k: int) -> None:
    user_ids, item_ids = data['user'].raw_id, data['item'].raw_id
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\t'.join(['user_id'] + [f'item_{r}' for r in range(1, k + 1)]) + '\n')
        for user, items in zip(users.tolist(), lists, strict=True):
            f.write('\t'.join([str(user_ids[user])] + [str(item_ids[i]) for i in items]) + '\n')


def _split_config(args: argparse.Namespace, config: Dict[str, Dict[str, Any]]
                  ) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    model_cfg = dict(config.get('model', {}))
    graph_cfg = graph_defaults(args.path, config.get('graph', {}))
    train_cfg: Dict[str, Any] = {'max_epochs': 1000, 'patience': 20, **config.get('train', {})}
    if args.epochs is not None:
        train_cfg['max_epochs'] = args.epochs
    if args.patience is not None:
        train_cfg['patience'] = args.patience
    return model_cfg, graph_cfg, train_cfg


def run(args: argparse.Namespace) -> int:
    from mllmrec_pyg.data import load_dataset

    config = load_config(args.config)
    data = load_dataset(args.path, **config.get('dataset', {}))
    return fit_and_report(data, args, config)


def fit_and_report(data: HeteroData, args: argparse.Namespace,
                   config: Dict[str, Dict[str, Any]],
                   reasoning: Optional[Dict[str, Any]] = None) -> int:
    r"""Trains :obj:`args.model` on :obj:`data` and writes the outputs of
    ``mllmrec train`` to :obj:`args.out`.

    Features already on :obj:`data` (:obj:`data['item'].x`,
    :obj:`data['user'].x`, e.g. from the reasoning stage of ``mllmrec run``)
    are used as they are; :obj:`reasoning` describes how they were made and
    is written into :obj:`metrics.json`.
    """
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer, grid_search, seed_everything

    started = time.perf_counter()
    model_cfg, graph_cfg, train_cfg = _split_config(args, config)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    os.makedirs(args.out, exist_ok=True)

    seed_everything(args.seed, args.deterministic)
    data, inputs = prepare_inputs(data, args.model, model_cfg, graph_cfg,
                                  getattr(args, 'preferences', None))
    if reasoning is not None:
        inputs = {**inputs, **reasoning}

    trainer_kwargs = dict(exclude_valid_at_test=args.exclude_valid_at_test,
                          progress=not args.no_progress, tensorboard=args.tensorboard,
                          **train_cfg)
    grid = config.get('grid')
    grid_info: Optional[Dict[str, Any]] = None
    if grid:
        out = grid_search(lambda **p: build_model(args.model, data, **model_cfg, **p).to(device),
                          data, grid, seed=args.seed, table_path=os.path.join(args.out, 'grid.csv'),
                          out_dir=os.path.join(args.out, 'grid'), resume=args.resume,
                          **trainer_kwargs)
        result = out.best_result
        model_cfg = {**model_cfg, **out.best_params}
        seed_everything(args.seed, args.deterministic)
        model = build_model(args.model, data, **model_cfg).to(device)
        trainer = Trainer(model, data, seed=args.seed,
                          out_dir=os.path.join(args.out, 'grid', f'run_{out.best_index}'),
                          **trainer_kwargs)
        trainer.load_checkpoint(str(trainer.checkpoint_path))
        assert trainer.best_state is not None
        model.load_state_dict(trainer.best_state)
        grid_info = {'grid': grid, 'selected': out.best_params, 'table': 'grid.csv',
                     'selected_by': 'validation ' + trainer.valid_metric}
    else:
        model = build_model(args.model, data, **model_cfg).to(device)
        trainer = Trainer(model, data, seed=args.seed, out_dir=args.out, **trainer_kwargs)
        result = trainer.fit(resume=args.resume)
    if result.test is None:
        raise ValueError(f'{args.path}: the dataset has no test split to report')

    result.valid.save(os.path.join(args.out, 'per_user_valid.npz'))
    result.test.save(os.path.join(args.out, 'per_user_test.npz'))
    k = min(TOPK_FILE_K, int(data['item'].num_nodes))
    lists = topk_without_training(trainer.evaluator, model, result.test.users, k)
    write_topk(os.path.join(args.out, 'topk_test.tsv'), data, result.test.users, lists, k)

    metrics: Dict[str, Any] = {
        'model': args.model,
        'dataset': args.path,
        'dataset_name': str(getattr(data, 'name', '')),
        'epoch': result.best_epoch,
        'best_epoch': result.best_epoch,
        'epochs_trained': result.epochs_trained,
        'stopped_early': result.stopped_early,
        'valid': result.valid.summary,
        'test': result.test.summary,
        'selection': f'early stopping and model choice on validation {trainer.valid_metric} '
                     '(strict improvement); test evaluated once, at the best epoch',
        'evaluation': {
            'protocol': 'full ranking over all items, training items excluded; users with '
                        '>=1 held-out item in the split and >=1 training item; MMRec metric '
                        'definitions (NDCG ideal DCG and MAP over min(|T_u|, K))',
            'exclude_valid_at_test': args.exclude_valid_at_test,
            'num_users_valid': int(result.valid.users.numel()),
            'num_users_test': int(result.test.users.numel()),
        },
        'seed': args.seed,
        'config': {'model': model_cfg, 'train': {**train_cfg, **trainer.settings()},
                   **({'graph': graph_cfg} if 'item_graph' in inputs else {})},
        'inputs': inputs,
        'model_repr': str(model),
        'timing': {'mean_epoch_s': result.mean_epoch_time,
                   'mean_valid_eval_s': result.mean_eval_time,
                   'total_s': time.perf_counter() - started},
    }
    if grid_info is not None:
        metrics['grid_search'] = grid_info
    with open(os.path.join(args.out, 'metrics.json'), 'w', encoding='utf-8') as f:
        json.dump(metrics, f, indent=2)
        f.write('\n')
    valid, test = result.valid.summary, result.test.summary
    print(f'best epoch {result.best_epoch}: valid recall@20 {valid.get("recall@20", float("nan")):.4f}'
          f' | test recall@20 {test.get("recall@20", float("nan")):.4f} '
          f'ndcg@20 {test.get("ndcg@20", float("nan")):.4f} -> {args.out}')
    return 0
