r"""The one configuration of an experiment: a typed :class:`ExperimentConfig`
with the sections ``dataset``, ``model``, ``graph``, ``train`` and ``grid``.

Keys are the real argument names of the objects each section configures,
derived from their signatures (so a new argument is configurable the day
it exists, and nothing is copied by hand):

* ``dataset``: :class:`~mllmrec_pyg.data.RecDataset` (``split``, ``seed``,
  ``k_core``, ``text_fields``, ``domain``, ...) plus ``path``;
* ``model``: ``name`` plus the constructor arguments of that model
  (:obj:`~mllmrec_pyg.nn.models.MODELS`), e.g. ``hidden_channels`` for
  :class:`~mllmrec_pyg.nn.models.MLLMRec`, ``num_layers`` for
  :class:`~mllmrec_pyg.nn.models.LightGCN`;
* ``graph``: :class:`~mllmrec_pyg.transforms.RefineItemGraph`
  (``knn_k``, ``alpha``, ``jaccard_k``, ...);
* ``train``: :class:`~mllmrec_pyg.train.Trainer` (``lr``, ``batch_size``,
  ``max_epochs``, ``patience``, ``val_metric``, ``seed``, ...);
* ``grid``: model arguments mapped to lists of values, searched with
  selection on validation only (:func:`~mllmrec_pyg.train.grid_search`).

Configs come in layers merged in order, as RecBole's: the signatures'
defaults, a dataset recipe (``datasets/<name>.json``, see
:mod:`mllmrec_pyg.experiment.recipes`), a config file, then command-line
overrides such as ``graph.alpha=0.6``.  In a layer, a key of ``model`` that
names a model (``"model": {"lightgcn": {"num_layers": 3}}``) holds settings
for that model only, so one recipe serves every model.

An unknown or misspelt key is a one-line :class:`ValueError` naming the key
and the closest valid one.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

#: The sections of a config, in the order they are written.
SECTIONS = ('dataset', 'model', 'graph', 'train', 'grid')

#: Constructor arguments that are not settings (the inputs the runner
#: passes itself).
_NOT_SETTINGS = {
    'dataset': {'self', 'root', 'transform', 'pre_transform', 'processed_root',
                'force_reload'},
    'graph': {'self', 'candidates', 'progress', 'group'},
    'train': {'self', 'model', 'data', 'out_dir', 'progress', 'tensorboard'},
    'model': {'self', 'user_x', 'item_x', 'item_edge_index', 'item_edge_weight',
              'num_users', 'num_items', 'edge_index', 'ui_edge_index',
              'item_features'},
}


def _signature_defaults(func: Callable, section: str) -> Dict[str, Any]:
    r"""The keyword arguments of :obj:`func` that a config may set, with
    their defaults (:obj:`inspect.Parameter.empty` for required ones)."""
    out: Dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in _NOT_SETTINGS[section] or param.kind in (
                param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        out[name] = param.default
        if 'Sequence' in str(param.annotation):
            _SEQUENCE_KEYS.add(f'{section}.{name}')
    return out


#: ``SECTION.KEY`` of the settings whose argument also takes a list
#: (annotated ``Sequence[...]``, e.g. ``graph.key`` and ``graph.alpha``).
_SEQUENCE_KEYS: set = set()


def dataset_keys() -> Dict[str, Any]:
    r"""The ``dataset`` keys and their defaults: ``path`` (the dataset),
    ``preferences`` (a ``preferences.tsv`` of ``mllmrec prefer`` giving
    MLLMRec's user features) and the arguments of
    :class:`~mllmrec_pyg.data.RecDataset`."""
    from mllmrec_pyg.data import RecDataset
    return {'path': None, 'preferences': None,
            **_signature_defaults(RecDataset.__init__, 'dataset')}


def graph_keys() -> Dict[str, Any]:
    r"""The ``graph`` keys and their defaults."""
    from mllmrec_pyg.transforms import RefineItemGraph
    return _signature_defaults(RefineItemGraph.__init__, 'graph')


def train_keys() -> Dict[str, Any]:
    r"""The ``train`` keys and their defaults."""
    from mllmrec_pyg.train import Trainer
    return _signature_defaults(Trainer.__init__, 'train')


def model_keys(name: str) -> Dict[str, Any]:
    r"""The ``model`` keys of the model :obj:`name` and their defaults."""
    from mllmrec_pyg.nn.models import MODELS
    cls = MODELS.get(name.lower())
    if cls is None:
        raise ValueError(_unknown(name, MODELS, what='model'))
    return _signature_defaults(cls.__init__, 'model')


def model_names() -> List[str]:
    from mllmrec_pyg.nn.models import MODELS
    return list(MODELS)


def _unknown(key: str, valid: Iterable[str], prefix: str = '', what: str = 'key') -> str:
    r"""The one-line message for an unknown :obj:`key`, naming the closest
    valid one (:obj:`prefix` is prepended to both, e.g. ``'graph.'``)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{prefix}{close[0]}'? " if close else ''
    return f"unknown {what} '{prefix}{key}' ({hint}valid: {', '.join(valid)})"


def _check_type(label: str, value: Any, default: Any) -> None:
    r"""A light type check against the signature's default: a value whose
    default is a bool, int, float or str must be one too (or, for an
    argument that takes a sequence, a list of them)."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return
    if isinstance(value, list) and label in _SEQUENCE_KEYS:
        if not value:
            raise ValueError(f"'{label}' must not be an empty list")
        for item in value:
            if item is not None or not isinstance(default, (int, float)):
                _check_type(label.partition('[')[0] + '[]', item, default)
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = 'true or false'
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = 'an integer'
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = 'a number'
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = 'a string'
    else:
        return
    if not ok:
        raise ValueError(f"'{label}' must be {kind} (got {value!r})")


@dataclass
class ExperimentConfig:
    r"""The resolved settings of one experiment.

    Attributes:
        dataset (Dict[str, Any]): :class:`~mllmrec_pyg.data.RecDataset`
            arguments and ``path``.
        model (Dict[str, Any]): ``name`` and that model's constructor
            arguments.
        graph (Dict[str, Any]): :class:`~mllmrec_pyg.transforms.RefineItemGraph`
            arguments (used by models with an item graph).
        train (Dict[str, Any]): :class:`~mllmrec_pyg.train.Trainer`
            arguments.
        grid (Dict[str, List[Any]]): Model arguments to search, each with its
            list of values. (default: empty, no search)
        sources (List[str]): The layers it was built from, in order
            (recipe files, config files, overrides), for the run's report.
    """
    dataset: Dict[str, Any] = field(default_factory=dict)
    model: Dict[str, Any] = field(default_factory=dict)
    graph: Dict[str, Any] = field(default_factory=dict)
    train: Dict[str, Any] = field(default_factory=dict)
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    sources: List[str] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return str(self.model.get('name', 'mllmrec'))

    @property
    def model_params(self) -> Dict[str, Any]:
        r"""The model's constructor arguments (without ``name``)."""
        return {k: v for k, v in self.model.items() if k != 'name'}

    @property
    def seed(self) -> int:
        r"""The seed of everything (``train.seed``)."""
        return int(self.train.get('seed', 2024))

    def to_dict(self) -> Dict[str, Any]:
        r"""The config as a JSON-ready mapping (the ``config.json`` of a run
        folder, which :func:`read_layer` reads back)."""
        out: Dict[str, Any] = {name: copy.deepcopy(getattr(self, name))
                               for name in SECTIONS}
        return out

    def save(self, path: str) -> None:
        r"""Writes the config as JSON to :obj:`path` (then renamed into
        place: an interrupted write never leaves half a file)."""
        from mllmrec_pyg.utils.paths import write_json
        write_json(path, self.to_dict(), default=str)

    def __repr__(self) -> str:
        graph = ', '.join(f'{k}={self.graph[k]}' for k in ('knn_k', 'alpha', 'jaccard_k')
                          if k in self.graph)
        return (f'{self.__class__.__name__}(model={self.model_name}, '
                f"dataset={self.dataset.get('path')}, graph=({graph}), "
                f"max_epochs={self.train.get('max_epochs')}, grid={list(self.grid)})")


# --------------------------------------------------------------------------
# Layers: reading, checking and merging.
# --------------------------------------------------------------------------

def read_layer(path: str) -> Dict[str, Any]:
    r"""Reads one config layer (JSON, or YAML for ``.yaml``/``.yml``) and
    checks its shape (known sections, mappings).  Top-level keys of a
    recipe other than the sections (``name``, ``description``) are kept
    under ``'_meta'``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such config file')
    if os.path.isdir(path):
        raise ValueError(f'{path}: is a folder, not a config file (JSON or YAML)')
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f'{path}: not a text file; a config is JSON or YAML '
                         '(UTF-8)') from None
    if path.endswith(('.yaml', '.yml')):
        import yaml
        try:
            layer = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(_yaml_error(path, exc)) from None
    else:
        try:
            layer = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f'{path}, line {exc.lineno}: invalid JSON '
                             f'({exc.msg})') from None
    if not isinstance(layer, dict):
        raise ValueError(f'{path}: a config must be a mapping of sections '
                         f'({", ".join(SECTIONS)})')
    return check_layer(layer, path)


def _yaml_error(path: str, exc: Exception) -> str:
    r"""One line for a YAML error: the file, the line and the problem."""
    mark = getattr(exc, 'problem_mark', None)
    problem = getattr(exc, 'problem', None) or ' '.join(str(exc).split())
    where = f'{path}, line {mark.line + 1}' if mark is not None else path
    return f'{where}: invalid YAML ({problem})'


def check_layer(layer: Mapping[str, Any], where: str = 'config') -> Dict[str, Any]:
    r"""Checks the sections of a layer (not yet the keys, which depend on
    the model) and returns a copy; ``name`` and ``description`` are
    recipe metadata, kept under ``'_meta'``."""
    out: Dict[str, Any] = {}
    meta = {k: layer[k] for k in ('name', 'description') if k in layer}
    for key, section in layer.items():
        if key in meta or key in ('_meta', 'sources'):
            continue
        if key not in SECTIONS:
            raise ValueError(f'{where}: ' + _unknown(key, SECTIONS, what='section'))
        if not isinstance(section, dict):
            raise ValueError(f'{where}: section "{key}" must be a mapping '
                             f'(got {type(section).__name__})')
        out[key] = copy.deepcopy(section)
    if meta:
        out['_meta'] = meta
    return out


def parse_override(text: str) -> Dict[str, Any]:
    r"""Parses one ``--set SECTION.KEY=VALUE`` into a layer.  The value is
    read as JSON where it parses (numbers, ``true``, ``null``, lists),
    else kept as a string; ``None`` is :obj:`null`."""
    target, sep, raw = text.partition('=')
    section, dot, key = target.strip().partition('.')
    if not sep or not dot or not key:
        raise ValueError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. "
                         "graph.alpha=0.6")
    if section not in SECTIONS:
        raise ValueError(f'--set {text!r}: ' + _unknown(section, SECTIONS, what='section'))
    raw = raw.strip()
    value: Any
    if raw in ('None', 'none'):
        value = None
    else:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
    node: Dict[str, Any] = {}
    layer = {section: node}
    *parents, last = key.split('.')
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return layer


def parse_grid_override(text: str) -> Dict[str, Any]:
    r"""Parses one ``--grid KEY=V1,V2,...`` into a ``grid`` layer (each
    value read as JSON where it parses)."""
    key, sep, raw = text.partition('=')
    if not sep or not key.strip() or not raw.strip():
        raise ValueError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. "
                         "model.reg_weight=1e-4,1e-3")
    values: List[Any] = []
    for part in raw.split(','):
        part = part.strip()
        try:
            values.append(json.loads(part))
        except json.JSONDecodeError:
            values.append(None if part in ('None', 'none') else part)
    return {'grid': {key.strip(): values}}


def _model_layer(section: Mapping[str, Any], name: str) -> Dict[str, Any]:
    r"""The settings a layer's ``model`` section gives the model
    :obj:`name`: its flat keys plus its per-model subsection."""
    names = set(model_names())
    flat = {k: v for k, v in section.items() if k not in names}
    own = section.get(name, {})
    if not isinstance(own, dict):
        raise ValueError(f"model.{name} must be a mapping of {name}'s settings")
    return {**flat, **own}


def resolve_config(layers: Sequence[Mapping[str, Any]],
                   sources: Sequence[str] = (),
                   model: Optional[str] = None) -> ExperimentConfig:
    r"""Merges config layers (later ones win, key by key) into a checked
    :class:`ExperimentConfig` with every default filled in from the
    signatures.

    Args:
        layers (Sequence[Mapping]): Layers as :func:`read_layer` /
            :func:`parse_override` return them, lowest priority first.
        sources (Sequence[str], optional): Where each layer came from.
            (default: :obj:`()`)
        model (str, optional): The model name, overriding the layers'
            ``model.name``. (default: :obj:`None`, the layers' or
            :obj:`'mllmrec'`)

    Raises:
        ValueError: On an unknown section or key (naming the closest valid
            one), a badly typed value, or a key both fixed and searched.
    """
    layers = [check_layer(layer, source) for layer, source in
              zip(layers, list(sources) + ['config'] * (len(layers) - len(sources)),
                  strict=True)]
    name = model
    if name is None:
        for layer in layers:
            name = layer.get('model', {}).get('name', name)
    name = str(name or 'mllmrec').lower()
    defaults = {'dataset': dataset_keys(), 'model': model_keys(name),
                'graph': graph_keys(), 'train': train_keys()}

    merged = _merge_layers(layers, sources, name)
    if 'batch_size' in defaults['model'] and 'batch_size' not in merged['model']:
        # A model that counts its batches (FREEDOM's per-epoch pruning)
        # follows the trainer's batch size unless told otherwise.
        merged['model']['batch_size'] = merged['train'].get(
            'batch_size', defaults['train']['batch_size'])
    for section, valid in defaults.items():
        for key, value in merged[section].items():
            where = _source_of(layers, sources, section, key, name)
            if key not in valid:
                raise ValueError(where + _unknown(key, valid, prefix=f'{section}.'))
            try:
                _check_type(f'{section}.{key}', value, valid[key])
            except ValueError as exc:
                raise ValueError(f'{where}{exc}') from None
    for key, values in merged['grid'].items():
        where = _source_of(layers, sources, 'grid', key, name)
        if key not in defaults['model']:
            raise ValueError(where + _unknown(key, defaults['model'], prefix='grid.')
                             + f' (the grid searches arguments of model {name!r})')
        if isinstance(values, (str, bytes)) or not isinstance(values, list) or not values:
            raise ValueError(f"{where}grid.{key} must be a non-empty list of values "
                             f"(got {values!r})")
        for value in values:
            try:
                _check_type(f'grid.{key}', value, defaults['model'][key])
            except ValueError as exc:
                raise ValueError(f'{where}{exc}') from None
        # A searched setting replaces the value a lower layer fixed.
        merged['model'].pop(key, None)

    resolved = ExperimentConfig(sources=list(sources))
    for section, valid in defaults.items():
        values = {k: v for k, v in valid.items() if v is not inspect.Parameter.empty}
        values.update(merged[section])
        setattr(resolved, section, values)
    resolved.model = {'name': name, **{k: v for k, v in resolved.model.items()
                                       if k not in merged['grid']}}
    resolved.grid = merged['grid']
    # Lists, not tuples, so the written config reads back equal.
    for section in ('dataset', 'graph', 'train'):
        for key, value in getattr(resolved, section).items():
            if isinstance(value, tuple):
                getattr(resolved, section)[key] = list(value)
    return resolved


def _source_of(layers: Sequence[Mapping[str, Any]], sources: Sequence[str], section: str,
               key: str, name: str) -> str:
    r"""``'SOURCE: '`` for the last layer that set :obj:`section.key` (a
    config file, a recipe, an override), or ``''`` when unnamed."""
    for index in range(min(len(layers), len(sources)) - 1, -1, -1):
        values = layers[index].get(section, {})
        if section == 'model':
            values = _model_layer(values, name)
        elif section == 'grid':
            values = {_grid_key(k): v for k, v in values.items()}
        if key in values:
            return f'{sources[index]}: '
    return ''


def _merge_layers(layers: Sequence[Mapping[str, Any]], sources: Sequence[str],
                  name: str) -> Dict[str, Dict[str, Any]]:
    r"""Merges checked layers key by key (later ones win), taking from each
    ``model`` section the settings of the model :obj:`name` only."""
    merged: Dict[str, Dict[str, Any]] = {s: {} for s in SECTIONS}
    for layer, source in zip(layers, list(sources) + ['config'] * len(layers), strict=False):
        fixed = set(_model_layer(layer.get('model', {}), name))
        both = sorted(fixed & {_grid_key(k) for k in layer.get('grid', {})})
        if both:
            raise ValueError(f"{source}: {both} set in both model and grid: a setting is "
                             'either fixed (model) or searched (grid)')
        for section, values in layer.items():
            if section == '_meta':
                continue
            if section == 'model':
                values = {k: v for k, v in _model_layer(values, name).items()
                          if k != 'name'}
            if section == 'grid':
                for key, grid_values in values.items():
                    merged['grid'][_grid_key(key)] = grid_values
                continue
            merged[section].update(values)
    return merged


def _grid_key(key: str) -> str:
    r"""``model.reg_weight`` and ``reg_weight`` both name a model argument."""
    section, dot, rest = key.partition('.')
    if dot and section == 'model':
        return rest
    if dot and section in SECTIONS:
        raise ValueError(f"grid.{key}: the grid searches model arguments "
                         f"(model.KEY); {section} settings are fixed per run")
    return key
