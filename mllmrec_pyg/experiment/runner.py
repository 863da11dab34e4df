r"""The experiment runner: one call from a dataset and a config to a trained,
evaluated model and a run folder, as RecBole's ``run_recbole`` and Cornac's
``Experiment``.

.. code-block:: python

    from mllmrec_pyg.experiment import build_config, run_experiment

    config = build_config(recipe='amazon-sports', model='mllmrec',
                          overrides=['graph.alpha=0.5'])
    result = run_experiment('../shared/data/amazon-sports', config,
                            out_dir='runs/sports')
    result.test['recall@20']

``mllmrec train``, ``mllmrec run`` and the benchmarks are thin layers over
:func:`run_experiment`.  Its stages (graph, train, evaluate, report) are
keyed by content (:mod:`mllmrec_pyg.experiment.store`): rerunning with
nothing changed trains nothing.

The run folder holds (the first two are a contract read by independent
checks):

* ``metrics.json``: ``val`` and ``test`` metrics (MMRec's definitions,
  keys such as ``recall@20``) at the best validation epoch, ``epoch`` (that
  epoch, 1-based; also ``best_epoch``), the settings, the evaluation
  protocol, the inputs and timings;
* ``topk_test.tsv``: a header line, then one row per evaluated test user:
  the user id and the top-50 item ids (training items excluded; validation
  items too with ``train.exclude_val_at_test``), ids as in the dataset's
  files;
* ``config.json``: the resolved config (``mllmrec train --config
  RUN/config.json`` reproduces the run);
* ``per_user_val.npz`` / ``per_user_test.npz``: per-user metrics for
  :func:`mllmrec_pyg.metrics.paired_t_test`;
* ``log.csv`` and ``checkpoint.pt`` (with a grid: ``grid.csv`` and
  ``grid/run_<i>/``), ``graph/item_graph.pt``, ``report.md`` and
  ``stages.json``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mllmrec_pyg import distributed
from mllmrec_pyg.metrics import EvaluationResult
from mllmrec_pyg.utils.paths import write_json

from .config import ExperimentConfig, read_layer, resolve_config
from .recipes import Recipe, find_recipe
from .store import (
    StageStore,
    UnreadableStageFile,
    check_out_dir,
    content_key,
    load_stage_file,
)

#: Length of the ranked lists of ``topk_test.tsv``.
TOPK_FILE_K = 50

#: How the stand-in user features are labelled in every output.
USER_STAND_IN = ("stand-in: mean of the MiniLM embeddings of each user's TRAINING items "
                 '(no LLM-reasoned preferences)')

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------
# Config assembly.
# --------------------------------------------------------------------------

def build_config(
    dataset_path: Optional[str] = None,
    *,
    recipe: Optional[str] = None,
    config: Union[None, str, Mapping[str, Any], ExperimentConfig] = None,
    overrides: Sequence[str] = (),
    grid: Sequence[str] = (),
    model: Optional[str] = None,
    log: Log = _quiet,
) -> ExperimentConfig:
    r"""Resolves the layered config of an experiment: the signatures'
    defaults, then the dataset's recipe, then :obj:`config`, then
    :obj:`overrides`.

    Args:
        dataset_path (str, optional): The dataset; when no :obj:`recipe` is
            named, the recipe whose name equals its folder name applies.
            (default: :obj:`None`)
        recipe (str, optional): A recipe name (``amazon-sports``) or file.
            (default: :obj:`None`)
        config (str or Mapping or ExperimentConfig, optional): A config file
            (e.g. a run's ``config.json``) or layer. (default: :obj:`None`)
        overrides (Sequence[str], optional): ``SECTION.KEY=VALUE`` strings.
            (default: :obj:`()`)
        grid (Sequence[str], optional): ``KEY=V1,V2`` strings adding grid
            entries. (default: :obj:`()`)
        model (str, optional): The model, overriding the layers'
            ``model.name``. (default: :obj:`None`)
        log (callable, optional): Says which recipe applied, or that none
            did. (default: silent)
    """
    from .config import parse_grid_override, parse_override

    layers: List[Mapping[str, Any]] = []
    sources: List[str] = []
    if isinstance(config, ExperimentConfig):
        config = config.to_dict()
    config_layer: Optional[Dict[str, Any]] = None
    if isinstance(config, str):
        config_layer, config_source = read_layer(config), config
    elif config is not None:
        config_layer, config_source = dict(config), 'config'
    path = dataset_path
    if path is None and config_layer is not None:
        path = config_layer.get('dataset', {}).get('path')
    found: Optional[Recipe] = find_recipe(recipe, path)
    if found is not None:
        layers.append(found.layer)
        sources.append(f'recipe {found.name} ({found.path})')
        why = 'named by --recipe' if recipe else f'the dataset folder is named {found.name}'
        log(f'recipe {found.name} ({found.path}) applies: {why}')
        if path is None:
            path = found.dataset_path()
    elif path is not None and config_layer is None:
        log(f"no recipe named '{os.path.basename(os.path.normpath(path.split(':')[0]))}': "
            "the defaults "
            'apply (graph knn_k=10, alpha=0.4, jaccard_k=10); pass --recipe NAME or '
            '--config FILE for a dataset\'s settings')
    if config_layer is not None:
        layers.append(config_layer)
        sources.append(config_source)
    for text in overrides:
        layers.append(parse_override(text))
        sources.append(f'--set {text}')
    for text in grid:
        layers.append(parse_grid_override(text))
        sources.append(f'--grid {text}')
    if path is not None:
        layers.append({'dataset': {'path': path}})
        sources.append('dataset path')
    return resolve_config(layers, sources, model=model)


def dataset_arguments(config: ExperimentConfig) -> Dict[str, Any]:
    r"""The :class:`~mllmrec_pyg.data.RecDataset` arguments of
    :obj:`config` (its ``dataset`` section less the runner's own keys)."""
    return {k: v for k, v in config.dataset.items() if k not in ('path', 'preferences')}


def check_home(needed_for: str = 'processed datasets and caches') -> str:
    r"""Checks that :obj:`$MLLMREC_HOME` (default ``~/.cache/mllmrec_pyg``)
    is a writable folder or can be created as one, with the folders below
    it that the experiment writes to, and returns it; else a one-line
    :class:`ValueError` naming the folder and the fix."""
    from mllmrec_pyg.data.hashing import mllmrec_home
    from mllmrec_pyg.utils.paths import existing_ancestor

    from .store import _is_writable_folder

    home = mllmrec_home()
    fix = 'set MLLMREC_HOME to a writable folder'
    if os.path.lexists(home) and not os.path.isdir(home):
        raise ValueError(f'{home}: MLLMREC_HOME is a file, not a folder ({needed_for} '
                         f'go there); {fix}')
    if not os.path.isdir(home):
        ancestor = existing_ancestor(home)
        if not _is_writable_folder(ancestor):
            raise ValueError(f'{home}: MLLMREC_HOME cannot be created ({ancestor} is not '
                             f'a writable folder; {needed_for} go there); {fix}')
        return home
    for folder in (home, *(os.path.join(home, sub) for sub in ('processed', 'synthetic',
                                                                'llm'))):
        if os.path.lexists(folder) and not _is_writable_folder(folder):
            raise ValueError(f'{folder}: not writable ({needed_for} go to MLLMREC_HOME); '
                             f'{fix}')
    return home


def load_experiment_data(config: ExperimentConfig, path: Optional[str] = None) -> HeteroData:
    r"""Loads the dataset of :obj:`config` (``dataset.path``, or
    :obj:`path`)."""
    from mllmrec_pyg.data import load_dataset

    path = path or config.dataset.get('path')
    if not path:
        raise ValueError('no dataset: give DATASET_PATH, a --recipe with a path, or a '
                         'config with dataset.path')
    check_home('processed datasets')
    return load_dataset(path, **dataset_arguments(config))


# --------------------------------------------------------------------------
# Model inputs: item and user features, the refined item graph.
# --------------------------------------------------------------------------

def needs_item_graph(config: ExperimentConfig) -> bool:
    r"""Whether the model reads the refined item graph of the graph stage:
    MLLMRec with item layers, or FREEDOM / SOIL told to take the item graph
    from the data (``model.item_graph='data'``, ``--item-graph refined``)
    instead of building their own."""
    if config.model_name == 'mllmrec':
        return int(config.model.get('item_layers', 1)) > 0
    return config.model.get('item_graph') == 'data'


def prepare_features(data: HeteroData, config: ExperimentConfig,
                     preferences: Optional[str] = None,
                     progress: bool = False) -> Dict[str, Any]:
    r"""Adds the features :obj:`config`'s model reads to :obj:`data` (item
    features; for MLLMRec the user features: the encoded
    :obj:`preferences` file or the training-items stand-in) and returns a
    description of what was added; :obj:`progress` shows the encoder's
    progress bar (on a terminal)."""
    from mllmrec_pyg.pipeline import (
        encode_items,
        mean_of_training_items,
        preference_features_from_file,
    )

    name = config.model_name
    info: Dict[str, Any] = {}
    user_init = config.model.get('user_init', 'features')
    if preferences is not None and (name != 'mllmrec' or user_init != 'features'):
        raise ValueError('--preferences gives MLLMRec its user features: it needs '
                         "--model mllmrec with model.user_init 'features'")
    item = data['item']
    if name in ('freedom', 'soil'):
        own = [n for n in ('text_feat', 'image_feat', 'audio_feat')
               if getattr(item, n, None) is not None]
        if getattr(item, 'x', None) is None and not own:
            item.x = encode_items(data, progress=progress)
            own.append('x (all-MiniLM-L6-v2 embeddings of the item text fields)')
        elif getattr(item, 'x', None) is not None:
            own.append("x (data['item'].x)")
        info['item_features'] = 'modalities: ' + ', '.join(own)
        return info
    if name not in ('mllmrec', 'vbpr'):
        return info
    if name == 'vbpr' and (getattr(item, 'text_feat', None) is not None or (
            getattr(item, 'image_feat', None) is not None
            and getattr(item, 'x', None) is None and not getattr(item, 'text', None))):
        # MMRec's VBPR input: the dataset's own feature files, text then
        # image; the item text is encoded only when there is no text_feat.
        own = [n for n in ('text_feat', 'image_feat') if getattr(item, n, None) is not None]
        info['item_features'] = "the dataset's " + ' + '.join(f'{n}.npy' for n in own)
        return info
    if getattr(item, 'x', None) is None:
        item.x = encode_items(data, progress=progress)
        info['item_features'] = ('all-MiniLM-L6-v2 embeddings of the item text fields '
                                 '(composed and cut to the encoder budget)')
    else:
        info.setdefault('item_features', "data['item'].x of the dataset")
    if name == 'vbpr':
        if getattr(item, 'image_feat', None) is not None:
            info['item_features'] += " + the dataset's image_feat.npy"
        return info
    if user_init != 'features':
        info['user_features'] = 'learnable ID embeddings (w/o reasoning)'
    elif preferences is not None:
        info.update(preference_features_from_file(data, preferences, progress=progress))
    elif getattr(data['user'], 'x', None) is None:
        data['user'].x = mean_of_training_items(data, item.x)
        info['user_features'] = USER_STAND_IN
    else:
        info['user_features'] = "data['user'].x of the dataset"
    return info


def build_item_graph(data: HeteroData, config: ExperimentConfig,
                     store: Optional[StageStore] = None,
                     candidates: Optional[Any] = None,
                     progress: bool = False) -> Dict[str, Any]:
    r"""The graph stage: applies :class:`~mllmrec_pyg.transforms.RefineItemGraph`
    with :obj:`config.graph` to :obj:`data` in place, or loads the graph a
    previous run built from the same item features, training edges and
    settings (``graph/item_graph.pt``).  :obj:`candidates` (a
    :class:`~mllmrec_pyg.transforms.CandidateCache`) shares the searches
    between the points of a sweep; :obj:`progress` shows the searches'
    progress bars (on a terminal)."""
    from mllmrec_pyg.data import split_fingerprint
    from mllmrec_pyg.nn.models import ITEM_SIMILAR
    from mllmrec_pyg.transforms import RefineItemGraph

    transform = RefineItemGraph(**config.graph, candidates=candidates, progress=progress)
    keys = transform.keys
    missing = [k for k in keys if getattr(data['item'], k, None) is None]
    if missing:
        have = [k for k in ('x', 'text_feat', 'image_feat', 'audio_feat')
                if getattr(data['item'], k, None) is not None]
        raise ValueError(f"graph.key={config.graph.get('key', 'x')!r}: data['item'] has no "
                         f"{', '.join(missing)} to build the refined item graph from; set "
                         f"graph.key to one or a list of its feature attributes "
                         f"({', '.join(have) or 'none: encode the item text first'}), e.g. "
                         f"--set 'graph.key=[\"image_feat\",\"audio_feat\"]'")
    features = [getattr(data['item'], k) for k in keys]
    key = content_key('graph', config.graph, *features, split_fingerprint(data))
    file = os.path.join('graph', 'item_graph.pt')
    info: Dict[str, Any] = {'item_graph': str(transform), 'item_graph_key': key[:16]}
    if store is not None and store.is_fresh('graph', key, [file]):
        try:
            stored = load_stage_file(store.path(file))
            if not isinstance(stored, dict) or 'edge_index' not in stored:
                raise UnreadableStageFile(f'{store.path(file)} holds no item graph')
        except UnreadableStageFile as exc:
            store.stale('graph', str(exc))
        else:
            for name, value in stored.items():
                data[ITEM_SIMILAR][name] = value
            info['item_graph_time_s'] = 0.0
            return info
    if store is not None:
        store.invalidate('graph')
    start = time.perf_counter()
    built = transform(data)
    for name, value in built[ITEM_SIMILAR].items():
        data[ITEM_SIMILAR][name] = value
    info['item_graph_time_s'] = round(time.perf_counter() - start, 3)
    if store is not None:
        store.save_output(file, {k: v for k, v in data[ITEM_SIMILAR].items()
                                 if isinstance(v, Tensor)})
        store.finish('graph', key, edges=int(data[ITEM_SIMILAR].edge_index.size(1)))
    return info


def prepare_experiment(data: HeteroData, config: ExperimentConfig,
                       store: Optional[StageStore] = None,
                       inputs: Optional[Mapping[str, Any]] = None,
                       progress: bool = False) -> Dict[str, Any]:
    r"""Everything before training: the features the model reads
    (:func:`prepare_features`) and, for MLLMRec, the refined item graph
    (:func:`build_item_graph`).  Returns how the inputs were made, merged
    with :obj:`inputs` (the reasoning stages' account)."""
    info = {**prepare_features(data, config, config.dataset.get('preferences'), progress),
            **(inputs or {})}
    if needs_item_graph(config):
        info.update(build_item_graph(data, config, store, progress=progress))
    return info


def input_key(data: HeteroData, config: ExperimentConfig) -> str:
    r"""The content key of everything a model is trained from: the training
    edges, the features and graph it reads, and the model, grid and
    training settings."""
    from mllmrec_pyg.data import split_fingerprint
    from mllmrec_pyg.nn.models import ITEM_SIMILAR

    tensors: List[Any] = []
    for store_name in ('user', 'item'):
        for attr in ('x', 'text_feat', 'image_feat'):
            tensors.append(getattr(data[store_name], attr, None))
    if ITEM_SIMILAR in data.edge_types:
        tensors += [data[ITEM_SIMILAR].edge_index,
                    getattr(data[ITEM_SIMILAR], 'edge_weight', None)]
    return content_key('train', split_fingerprint(data), int(data['user'].num_nodes),
                       int(data['item'].num_nodes), config.model, config.grid,
                       config.train, *tensors)


# --------------------------------------------------------------------------
# The result.
# --------------------------------------------------------------------------

@dataclass
class ExperimentResult:
    r"""What :func:`run_experiment` returns.

    Attributes:
        config (ExperimentConfig): The resolved config.
        metrics (Dict[str, Any]): The content of ``metrics.json``.
        val (EvaluationResult): Per-user validation results at the best
            epoch.
        test (EvaluationResult): Per-user test results at the best epoch.
        model (Recommender, optional): The model with the best epoch's
            parameters (:obj:`None` when every stage was up to date and the
            results were read back from the run folder).
        out_dir (str, optional): The run folder.
        stages_run (List[str]): The stages that ran.
        stages_skipped (List[str]): The stages that were up to date.
        epochs_run (int): Training epochs run by THIS call (0 when the
            train stage was up to date).
    """
    config: ExperimentConfig
    metrics: Dict[str, Any]
    val: EvaluationResult
    test: EvaluationResult
    model: Optional[torch.nn.Module] = None
    out_dir: Optional[str] = None
    stages_run: List[str] = field(default_factory=list)
    stages_skipped: List[str] = field(default_factory=list)
    epochs_run: int = 0

    @property
    def best_epoch(self) -> int:
        return int(self.metrics['best_epoch'])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(model={self.config.model_name}, best_epoch='
                f'{self.best_epoch}, val_recall@20={self.val.summary.get("recall@20", 0):.4f}, '
                f'test_recall@20={self.test.summary.get("recall@20", 0):.4f})')


# --------------------------------------------------------------------------
# Training and evaluation.
# --------------------------------------------------------------------------

def _trainer_arguments(config: ExperimentConfig, progress: bool,
                       tensorboard: bool) -> Dict[str, Any]:
    return {**config.train, 'progress': progress, 'tensorboard': tensorboard}


def _train(data: HeteroData, config: ExperimentConfig, out_dir: Optional[str],
           device: torch.device, resume: bool, progress: bool, tensorboard: bool,
           deterministic: bool, resumed_epoch: int = 0
           ) -> Tuple[Any, Any, Dict[str, Any], Optional[Dict[str, Any]], int]:
    r"""Trains the model (or the grid) and returns the model with its best
    parameters, its trainer, the model settings used, the grid report and
    the epochs run (:obj:`resumed_epoch`: the epoch of the checkpoint a
    resumed run continues from)."""
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer, grid_search, seed_everything

    seed = config.seed
    name, params = config.model_name, config.model_params
    trainer_kwargs = _trainer_arguments(config, progress, tensorboard)
    trainer_kwargs.pop('seed', None)
    if not config.grid:
        seed_everything(seed, deterministic)
        model = build_model(name, data, **params).to(device)
        trainer = Trainer(model, data, seed=seed, out_dir=out_dir, **trainer_kwargs)
        result = trainer.fit(resume=resume)
        return model, trainer, params, None, result.epochs_trained - resumed_epoch
    if out_dir is None:
        raise ValueError('a grid search needs an output folder (out_dir) for its runs')
    val_metric = trainer_kwargs.pop('val_metric', 'recall@20')
    out = grid_search(lambda **p: build_model(name, data, **params, **p).to(device),
                      data, config.grid, seed=seed, val_metric=val_metric,
                      table_path=os.path.join(out_dir, 'grid.csv'),
                      out_dir=os.path.join(out_dir, 'grid'), resume=resume, **trainer_kwargs)
    params = {**params, **out.best_params}
    seed_everything(seed, deterministic)
    model = build_model(name, data, **params).to(device)
    trainer = Trainer(model, data, seed=seed, val_metric=val_metric,
                      out_dir=os.path.join(out_dir, 'grid', f'run_{out.best_index}'),
                      **trainer_kwargs)
    _restore_best(trainer)
    grid_info = {'grid': config.grid, 'selected': out.best_params, 'table': 'grid.csv',
                 'selected_by': 'validation ' + trainer.val_metric}
    epochs = sum(r.epochs_trained for r in out.results if r is not None)
    return model, trainer, params, grid_info, epochs


def _check_resume_checkpoints(out_dir: Optional[str], grid: bool) -> int:
    r"""Reads the checkpoints ``--resume`` will continue from BEFORE the
    train stage is invalidated (a corrupt one is a one-line error that
    leaves the run folder as it was) and returns the epoch of the
    single-model checkpoint (0 without one)."""
    import glob

    from mllmrec_pyg.train.trainer import RESUME_FIX, read_checkpoint

    if out_dir is None:
        return 0
    if grid:
        for path in sorted(glob.glob(os.path.join(out_dir, 'grid', 'run_*',
                                                  'checkpoint.pt'))):
            read_checkpoint(path, RESUME_FIX)
        return 0
    path = os.path.join(out_dir, 'checkpoint.pt')
    if not os.path.exists(path):
        return 0
    return int(read_checkpoint(path, RESUME_FIX)['epoch'])


def _restore_best(trainer: Any) -> None:
    r"""Loads the best epoch's parameters from the trainer's checkpoint."""
    trainer.load_checkpoint(str(trainer.checkpoint_path))
    if trainer.best_state is None:
        raise ValueError(f'{trainer.checkpoint_path} holds no trained epoch; rerun with '
                         '--force train')
    trainer.model.load_state_dict(trainer.best_state)


def _rebuild_trained(data: HeteroData, config: ExperimentConfig, out_dir: str,
                     device: torch.device, params: Dict[str, Any],
                     grid_info: Optional[Dict[str, Any]]) -> Tuple[Any, Any]:
    r"""The model and trainer of an up-to-date train stage, with the best
    parameters loaded from the checkpoint (no epoch is trained).  Raises
    :class:`UnreadableStageFile` when the checkpoint or ``grid.csv`` is
    missing (the stage is then stale); a corrupt checkpoint is a one-line
    :class:`ValueError` naming it and the fix."""
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer, seed_everything

    kwargs = _trainer_arguments(config, False, False)
    kwargs.pop('seed', None)
    run_dir = out_dir
    if grid_info is not None:
        table = os.path.join(out_dir, 'grid.csv')
        try:
            rows = _read_grid_rows(table)
            run_dir = os.path.join(out_dir, 'grid', f'run_{rows.index(1)}')
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnreadableStageFile(f'{table} is missing or unreadable') from exc
    checkpoint = os.path.join(run_dir, 'checkpoint.pt')
    if not os.path.exists(checkpoint):
        raise UnreadableStageFile(f'{checkpoint} is missing')
    seed_everything(config.seed)
    model = build_model(config.model_name, data, **params).to(device)
    trainer = Trainer(model, data, seed=config.seed, out_dir=run_dir, **kwargs)
    _restore_best(trainer)
    return model, trainer


def _read_grid_rows(path: str) -> List[int]:
    import csv
    with open(path, newline='') as f:
        return [int(row['selected']) for row in csv.DictReader(f)]


def write_topk(path: str, data: HeteroData, users: Tensor, lists: List[List[int]],
               k: int) -> None:
    r"""Writes ``topk_test.tsv``: a header, then per user its id and ranked
    item ids (ids as in the dataset's files)."""
    user_ids, item_ids = data['user'].raw_id, data['item'].raw_id
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\t'.join(['user_id'] + [f'item_{r}' for r in range(1, k + 1)]) + '\n')
        for user, items in zip(users.tolist(), lists, strict=True):
            f.write('\t'.join([str(user_ids[user])] + [str(item_ids[i]) for i in items]) + '\n')


def _final_representations(model: Any) -> Tuple[Tensor, Tensor]:
    r"""The model's final :obj:`(user, item)` representations, its
    :meth:`embed` in evaluation mode without gradients (as the evaluator
    scores them), as :obj:`float32` CPU tensors."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            user, item = model.embed()
    finally:
        model.train(was_training)
    return user.detach().float().cpu(), item.detach().float().cpu()


def _evaluate_and_write(data: HeteroData, config: ExperimentConfig, model: Any, trainer: Any,
                        out_dir: Optional[str], representations: Tuple[Tensor, Tensor]
                        ) -> Tuple[EvaluationResult, EvaluationResult]:
    r"""The evaluate stage: validation and test at the best epoch, the
    per-user files, ``topk_test.tsv`` and ``representations.pt`` (the final
    ``'user'`` and ``'item'`` representations, and ``'user_num_train'``,
    each user's number of training interactions)."""
    splits = [s for s in ('val', 'test') if s in trainer.evaluator.splits]
    if 'test' not in splits:
        raise ValueError(f'{getattr(data, "name", "the dataset")}: the dataset has no test '
                         'split to report')
    results = trainer.evaluator.evaluate(model, splits=splits)
    val, test = results['val'], results['test']
    if out_dir is not None and distributed.is_main_process():
        val.save(os.path.join(out_dir, 'per_user_val.npz'))
        test.save(os.path.join(out_dir, 'per_user_test.npz'))
        k = min(TOPK_FILE_K, int(data['item'].num_nodes))
        lists = trainer.evaluator.recommend(model, test.users, split='test', k=k)
        write_topk(os.path.join(out_dir, 'topk_test.tsv'), data, test.users, lists, k)
        from mllmrec_pyg.data import train_edge_index
        from mllmrec_pyg.utils.paths import replace_file

        user, item = representations
        num_train = torch.bincount(train_edge_index(data)[0].cpu(),
                                   minlength=int(data['user'].num_nodes))
        saved = {'user': user, 'item': item, 'user_num_train': num_train}
        replace_file(os.path.join(out_dir, 'representations.pt'),
                     lambda tmp: torch.save(saved, tmp))
    return val, test


def _history_summary(trainer: Any) -> Dict[str, Any]:
    history = list(trainer.history)
    best = trainer.early_stopping
    return {'best_epoch': int(best.best_epoch), 'epochs_trained': int(trainer.epoch),
            'stopped_early': bool(best.should_stop), 'history': history}


def _metrics(data: HeteroData, config: ExperimentConfig, val: EvaluationResult,
             test: EvaluationResult, trainer: Any, model: Any, inputs: Dict[str, Any],
             params: Dict[str, Any], grid_info: Optional[Dict[str, Any]],
             representations: Tuple[Tensor, Tensor], started: float) -> Dict[str, Any]:
    from mllmrec_pyg.data import split_fingerprint
    from mllmrec_pyg.train.trainer import history_mean

    summary = _history_summary(trainer)
    history = summary.pop('history')
    metrics: Dict[str, Any] = {
        'model': config.model_name,
        'dataset': config.dataset.get('path'),
        'dataset_name': str(getattr(data, 'name', '')),
        # What `mllmrec compare` checks before pairing two runs' users.
        'split_fingerprint': split_fingerprint(data),
        'epoch': summary['best_epoch'],
        **summary,
        'val': val.summary,
        'test': test.summary,
        'selection': f'early stopping and model choice on validation {trainer.val_metric} '
                     '(strict improvement); test evaluated once, at the best epoch',
        'evaluation': {
            'protocol': 'full ranking over all items, training items excluded; users with '
                        '>=1 held-out item in the split and >=1 training item; MMRec metric '
                        'definitions (NDCG ideal DCG and MAP over min(|T_u|, K))',
            'exclude_val_at_test': bool(config.train.get('exclude_val_at_test', False)),
            'num_users_val': int(val.users.numel()),
            'num_users_test': int(test.users.numel()),
        },
        'seed': config.seed,
        'config': {'model': params, 'train': {**config.train, **trainer.settings()},
                   **({'graph': config.graph} if 'item_graph' in inputs else {})},
        'inputs': inputs,
        'model_repr': str(model),
        'timing': {'mean_epoch_s': history_mean(history, 'train_time_s'),
                   'mean_val_eval_s': history_mean(history, 'eval_time_s'),
                   'total_s': time.perf_counter() - started},
    }
    from mllmrec_pyg.data import split_edge_index
    from mllmrec_pyg.metrics import representation_summary
    from mllmrec_pyg.metrics.representation import SUMMARY_POINTS

    user, item = representations
    pairs = {split: split_edge_index(data, split) for split in trainer.evaluator.splits}
    metrics['representation'] = {
        'definition': 'Wang et al. (KDD 2022): L2-normalised embed() outputs; alignment: '
                      "mean squared distance over the split's distinct positive pairs; "
                      'uniformity (t=2): log mean exp(-2 squared distance) over the pairs of '
                      f"the split's users, of its items (a seeded sample of {SUMMARY_POINTS} "
                      'beyond), and their mean (DirectAU)',
        **{split: representation_summary(user, item, index)
           for split, index in pairs.items() if index.numel()},
    }
    if grid_info is not None:
        metrics['grid_search'] = grid_info
    return metrics


def _read_result(config: ExperimentConfig, out_dir: str) -> Tuple[Dict[str, Any],
                                                                 EvaluationResult,
                                                                 EvaluationResult]:
    r"""The results of an up-to-date evaluate stage; an unreadable file is
    an :class:`UnreadableStageFile` naming it."""
    path = os.path.join(out_dir, 'metrics.json')
    try:
        with open(path, encoding='utf-8') as f:
            metrics = json.load(f)
        if not isinstance(metrics, dict) or not {'best_epoch', 'val', 'test'} <= set(metrics):
            raise ValueError('not the metrics of a run')
        results = []
        for split in ('val', 'test'):
            path = os.path.join(out_dir, f'per_user_{split}.npz')
            results.append(EvaluationResult.load(path))
    except Exception as exc:  # json, numpy and zipfile each raise their own
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise UnreadableStageFile(f'{path} is corrupt or truncated') from exc
    return metrics, results[0], results[1]


def _train_and_evaluate(data: HeteroData, config: ExperimentConfig, out_dir: Optional[str],
                        store: Optional[StageStore], train_key: str, info: Dict[str, Any],
                        started: float, **options: Any
                        ) -> Tuple[Dict[str, Any], EvaluationResult, EvaluationResult,
                                   Any, int]:
    r"""The train and evaluate stages: each skipped when up to date (the
    results are then read back from the run folder, or the trained model
    from its checkpoint).  Returns the metrics, the val and test results,
    the model (:obj:`None` when both stages were up to date) and the
    epochs trained."""
    eval_key = content_key('evaluate', train_key)
    if (store is not None and store.is_fresh('train', train_key)
            and store.is_fresh('evaluate', eval_key, EVALUATE_OUTPUTS)):
        try:
            return (*_read_result(config, store.root), None, 0)
        except UnreadableStageFile as exc:
            store.stale('evaluate', str(exc))
    record = store.record('train') if store is not None else None
    epochs_run = 0
    rebuilt = None
    if store is not None and 'train' in store.skipped and record is not None:
        params, grid_info = record['params'], record.get('grid')
        try:
            rebuilt = _rebuild_trained(data, config, store.root, options['device'],
                                       params, grid_info)
        except UnreadableStageFile as exc:
            store.stale('train', str(exc))
    if rebuilt is not None:
        model, trainer = rebuilt
    else:
        resumed_epoch = 0
        if options['resume']:
            resumed_epoch = _check_resume_checkpoints(out_dir, bool(config.grid))
        if store is not None:
            store.invalidate('train')
            store.invalidate('evaluate')
        model, trainer, params, grid_info, epochs_run = _train(
            data, config, out_dir, options['device'], options['resume'],
            options['progress'], options['tensorboard'], options['deterministic'],
            resumed_epoch)
        if store is not None:
            store.finish('train', train_key, params=params, grid=grid_info,
                         epochs_run=epochs_run)
    # embed() once: the saved representations and their metrics.
    representations = _final_representations(model)
    val, test = _evaluate_and_write(data, config, model, trainer, out_dir, representations)
    metrics = _metrics(data, config, val, test, trainer, model, info, params, grid_info,
                       representations, started)
    if store is not None:
        if distributed.is_main_process():
            write_json(store.path('metrics.json'), metrics)
            config.save(store.path('config.json'))
        store.finish('evaluate', eval_key)
    return metrics, val, test, model, epochs_run


class _ReadOnlyStageStore(StageStore):
    r"""The :class:`StageStore` of a rank other than :obj:`0` under
    :obj:`torchrun`: it reads the run folder and keeps its records in memory
    exactly as rank :obj:`0`'s store does (so every rank takes the same
    decisions) but writes nothing."""
    def _write(self) -> None:
        pass

    def save_output(self, file: str, obj: Any) -> None:
        pass


def _stage_store(out_dir: Optional[str], force: Sequence[str], log: Log
                 ) -> Optional[StageStore]:
    r"""The run folder's :class:`StageStore`; under :obj:`torchrun` rank
    :obj:`0` creates the folder, then the other ranks open it read-only,
    all before anyone writes, so that all read the same ``stages.json``."""
    if out_dir is None:
        return None
    store: Optional[StageStore] = None
    if distributed.is_main_process():
        store = StageStore(out_dir, force=force, log=log)
    distributed.barrier()
    if store is None:
        store = _ReadOnlyStageStore(out_dir, force=force, log=log)
    distributed.barrier()
    return store


#: The files of an evaluate stage.
EVALUATE_OUTPUTS = ('metrics.json', 'per_user_val.npz', 'per_user_test.npz', 'topk_test.tsv',
                    'representations.pt')


def run_experiment(
    data: Union[HeteroData, str, None],
    config: Union[ExperimentConfig, Mapping[str, Any], str, None] = None,
    out_dir: Optional[str] = None,
    *,
    inputs: Optional[Mapping[str, Any]] = None,
    resume: bool = False,
    force: Sequence[str] = (),
    device: Union[str, torch.device, None] = None,
    deterministic: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
    log: Log = _quiet,
) -> ExperimentResult:
    r"""Runs one experiment: prepares the model inputs, builds the refined
    item graph (for MLLMRec), trains with early stopping on validation (or
    a grid search selecting on validation), evaluates validation and test
    at the best epoch, writes the run folder and returns the results.

    Args:
        data (HeteroData or str, optional): The dataset, or its path
            (:obj:`None`: :obj:`config.dataset['path']`).
        config (ExperimentConfig or Mapping or str, optional): The config,
            a layer, or a config file; a mapping or file is resolved with
            :func:`build_config`. (default: :obj:`None`, the defaults)
        out_dir (str, optional): The run folder; without one nothing is
            written and no stage is skipped. (default: :obj:`None`)
        inputs (Mapping, optional): How the features already on :obj:`data`
            were made (e.g. by the reasoning stages of ``mllmrec run``),
            recorded in ``metrics.json``. (default: :obj:`None`)
        resume (bool, optional): Continue training from the run folder's
            checkpoint (each grid point from its own). (default: :obj:`False`)
        force (Sequence[str], optional): Stages to rerun even when up to
            date (``graph``, ``train``, ``evaluate``, ``report``); later
            stages rerun too. (default: :obj:`()`)
        device (str or torch.device, optional): Where to train.
            (default: CUDA when available)
        deterministic (bool, optional): Deterministic kernels.
            (default: :obj:`False`)
        tensorboard (bool, optional): Also log to TensorBoard.
            (default: :obj:`False`)
        progress (bool, optional): Show progress bars. (default: :obj:`True`)
        log (callable, optional): Receives one-line messages (the recipe
            applied, skipped stages). (default: silent)
    """
    from mllmrec_pyg.train import seed_everything

    started = time.perf_counter()
    if out_dir is not None:
        check_out_dir(out_dir)
    if not isinstance(config, ExperimentConfig):
        config = build_config(data if isinstance(data, str) else None, config=config,
                              log=log)
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    # Under torchrun: one process group, this rank's GPU; rank 0 alone
    # writes and speaks, the others compute the same stages read-only.
    distributed.init_distributed(str(dev))
    dev = torch.device(distributed.device_for_rank(str(dev)))
    main = distributed.is_main_process()
    if not main:
        log, progress = _quiet, False
    with distributed.main_process_first():
        if data is None or isinstance(data, str):
            data = load_experiment_data(config, data)
    store = _stage_store(out_dir, force, log)
    if main and store is not None and not os.path.exists(store.path('config.json')):
        # Rewritten when the evaluate stage finishes: a rerun that fails
        # leaves the config of the finished run in place.
        config.save(store.path('config.json'))

    seed_everything(config.seed, deterministic)
    with distributed.main_process_first():
        info = prepare_experiment(data, config, store, inputs, progress=progress)

    train_key = input_key(data, config)
    from .report import REPORT_FORMAT
    report_key = content_key('report', content_key('evaluate', train_key), REPORT_FORMAT)
    metrics, val, test, model, epochs_run = _train_and_evaluate(
        data, config, out_dir, store, train_key, info, started, device=dev, resume=resume,
        progress=progress, tensorboard=tensorboard, deterministic=deterministic)
    # The report's files (report.md and its plots) as its last run recorded
    # them: a deleted plot makes the stage rerun.
    report_files = (store.record('report') or {}).get('files', ['report.md']) \
        if store is not None else []
    if (main and store is not None
            and not store.is_fresh('report', report_key, report_files)):
        from .report import write_report
        store.invalidate('report')
        files = write_report(store.root, config, metrics)
        store.finish('report', report_key, files=files)
    return ExperimentResult(config=config, metrics=metrics, val=val, test=test,
                            model=model, out_dir=out_dir,
                            stages_run=list(store.ran) if store else [],
                            stages_skipped=list(store.skipped) if store else [],
                            epochs_run=epochs_run)
