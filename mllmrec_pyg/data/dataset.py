r"""The dataset of this package: one :class:`~torch_geometric.data.HeteroData`
read from a folder of MMRec, RecBole or raw Amazon 2014 files."""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from .build import build_hetero_data
from .hashing import hash_files, hash_params, mllmrec_home
from .readers import (
    DEFAULT_TEXT_FIELDS,
    RawDataset,
    find_amazon_raw,
    read_amazon_meta,
    read_amazon_ratings,
    read_item_features,
    read_mmrec_inter,
    read_recbole_inter,
    read_recbole_side,
    read_side_table,
)

log = logging.getLogger(__name__)

#: Bumped whenever the processed layout changes, so old files are not reused.
PROCESSED_VERSION = 2

# A processed file is the tuple (dict, None, HeteroData) that
# InMemoryDataset.save writes: plain containers, tensors and this one class,
# all that torch.load(weights_only=True) has to allow (PyG allows it too).
torch.serialization.add_safe_globals([HeteroData])

#: The domain that fills Prompt1's ``{dataset name}``, by folder-name keyword.
DOMAINS: Dict[str, str] = {
    'baby': 'Baby',
    'sports': 'Sports and Outdoors',
    'clothing': 'Clothing, Shoes and Jewelry',
    'ml-100k': 'Movies',
    'movielens': 'Movies',
    'tiktok': 'Micro-videos',
    'synthetic': 'Home and Fashion',
}


#: The optional file beside the data that names the dataset's domain.
INFO_FILE = 'dataset.json'


def _inter_format(path: str) -> str:
    r"""Returns :obj:`'recbole'` when the header of the interaction file
    :obj:`path` has ``field:type`` names, else :obj:`'mmrec'`."""
    with open(path, encoding='utf-8', errors='replace') as f:
        header = f.readline()
    fields = header.rstrip('\n').split('\t')
    return 'recbole' if any(':' in c for c in fields) else 'mmrec'


def detect_format(root: str) -> Tuple[str, List[str]]:
    r"""Returns the format of the dataset folder :obj:`root`
    (:obj:`'mmrec'`, :obj:`'recbole'` or :obj:`'amazon_raw'`) and the
    interaction file(s) it will read.

    Args:
        root (str): The dataset folder.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f'{root}: no such dataset folder')
    if glob.glob(os.path.join(root, 'ratings_*.csv')):
        return 'amazon_raw', sorted(glob.glob(os.path.join(root, 'ratings_*.csv')))
    inters = sorted(glob.glob(os.path.join(root, '*.inter')))
    # 'sports.inter' is the interaction file; 'sports.asin.inter' a variant.
    main = [p for p in inters if os.path.basename(p).count('.') == 1]
    if len(main) != 1:
        found = [os.path.basename(p) for p in inters]
        raise FileNotFoundError(
            f'{root}: expected one <name>.inter file (MMRec or RecBole) or '
            f'ratings_<Category>.csv + meta_<Category>.json.gz (raw Amazon '
            f'2014), found {found or "none"}. Pass inter_file= to choose one')
    return _inter_format(main[0]), main


@dataclass
class DatasetFiles:
    r"""The files of a dataset folder, as found by :func:`find_dataset_files`:
    exactly the files :func:`read_dataset_files` reads, and so exactly the
    files whose bytes key the processed file (:attr:`paths`).

    Args:
        root (str): The dataset folder.
        format (str): :obj:`'mmrec'`, :obj:`'recbole'` or
            :obj:`'amazon_raw'`.
        inter (str): The interaction file (``<name>.inter`` or
            ``ratings_<Category>.csv``).
        meta (str, optional): The raw Amazon ``meta_<Category>.json.gz``.
            (default: :obj:`None`)
        item_table (str, optional): The RecBole ``<name>.item`` file.
            (default: :obj:`None`)
        user_table (str, optional): The RecBole ``<name>.user`` file.
            (default: :obj:`None`)
        side_tables (List[str], optional): The MMRec side-table candidates
            (``*.tsv`` / ``*.csv``; those without an ``itemID`` / ``userID``
            column are opened and skipped). (default: :obj:`[]`)
        features (List[str], optional): The MMRec ``*_feat.npy`` modality
            features. (default: :obj:`[]`)
        info (str, optional): The ``dataset.json`` naming the domain.
            (default: :obj:`None`)
    """
    root: str
    format: str
    inter: str
    meta: Optional[str] = None
    item_table: Optional[str] = None
    user_table: Optional[str] = None
    side_tables: List[str] = field(default_factory=list)
    features: List[str] = field(default_factory=list)
    info: Optional[str] = None

    @property
    def paths(self) -> List[str]:
        r"""Every file, the interaction file first and the others sorted."""
        others = [p for p in (self.meta, self.item_table, self.user_table,
                              self.info) if p is not None]
        others += self.side_tables + self.features
        return [self.inter] + sorted(set(others) - {self.inter})


def find_dataset_files(root: str, inter_file: Optional[str] = None,
                       category: Optional[str] = None) -> DatasetFiles:
    r"""Finds the files of the dataset folder :obj:`root`: its format, its
    interaction file and, by format, the raw Amazon meta file, the RecBole
    ``.item`` / ``.user`` files beside the interaction file or the MMRec side
    tables and ``*_feat.npy`` features of :obj:`root`, plus ``dataset.json``.

    This is the only place that looks for files: :func:`read_dataset_files`
    reads what it returns and :class:`RecDataset` keys its processed file by
    the bytes of :attr:`DatasetFiles.paths`.

    Args:
        root (str): The dataset folder.
        inter_file (str, optional): The interaction file, relative to
            :obj:`root`, when the folder holds several. (default: :obj:`None`)
        category (str, optional): The raw Amazon category when the folder
            holds several. (default: :obj:`None`)
    """
    if inter_file is not None:
        inter = os.path.join(root, inter_file)
        if not os.path.exists(inter):
            raise FileNotFoundError(f'{inter}: no such interaction file')
        fmt = _inter_format(inter)
    else:
        fmt, inters = detect_format(root)
        inter = inters[0]
    info = os.path.join(root, INFO_FILE)
    files = DatasetFiles(root=root, format=fmt, inter=inter,
                         info=info if os.path.exists(info) else None)
    if fmt == 'amazon_raw':
        files.inter, files.meta = find_amazon_raw(root, category)
    elif fmt == 'recbole':
        stem = os.path.splitext(inter)[0]
        for ext in ('item', 'user'):
            if os.path.exists(f'{stem}.{ext}'):
                setattr(files, f'{ext}_table', f'{stem}.{ext}')
    else:
        files.side_tables = sorted(glob.glob(os.path.join(root, '*.tsv')) +
                                   glob.glob(os.path.join(root, '*.csv')))
        files.features = sorted(glob.glob(os.path.join(root, '*_feat.npy')))
    return files


def _join_side(current: Optional[pd.DataFrame], table: pd.DataFrame
               ) -> pd.DataFrame:
    r"""Outer-joins the columns of the side table :obj:`table` that
    :obj:`current` lacks onto :obj:`current` (the first table wins)."""
    if current is None:
        return table
    new_cols = [c for c in table.columns if c not in current.columns]
    return current.join(table[new_cols], how='outer')


def read_dataset_files(files: DatasetFiles) -> RawDataset:
    r"""Reads the files found by :func:`find_dataset_files` (and no other).
    :attr:`RawDataset.files` lists those that contributed data.

    Args:
        files (DatasetFiles): The dataset's files.
    """
    if files.format == 'amazon_raw':
        assert files.meta is not None
        return RawDataset(inter=read_amazon_ratings(files.inter),
                          source=files.inter,
                          item_table=read_amazon_meta(files.meta),
                          files=[files.inter, files.meta], root=files.root)
    if files.format == 'recbole':
        raw = RawDataset(inter=read_recbole_inter(files.inter),
                         source=files.inter, files=[files.inter],
                         root=files.root)
        if files.item_table is not None:
            raw.item_table = read_recbole_side(files.item_table, 'item_id')
            raw.files.append(files.item_table)
        if files.user_table is not None:
            raw.user_table = read_recbole_side(files.user_table, 'user_id')
            raw.files.append(files.user_table)
        return raw
    raw = RawDataset(inter=read_mmrec_inter(files.inter), source=files.inter,
                     integer_ids=True, files=[files.inter], root=files.root)
    for side in files.side_tables:
        found = read_side_table(side)
        if found is None:
            continue
        kind, table = found
        raw.files.append(side)
        if kind == 'item':
            raw.item_table = _join_side(raw.item_table, table)
        else:
            raw.user_table = _join_side(raw.user_table, table)
    for feat in files.features:
        name = os.path.basename(feat)[:-len('.npy')]
        raw.item_features[name] = read_item_features(feat)
        raw.item_feature_files[name] = feat
        raw.files.append(feat)
    return raw


def read_folder(root: str, inter_file: Optional[str] = None,
                category: Optional[str] = None) -> RawDataset:
    r"""Reads every file of a dataset folder that the package understands:
    :func:`read_dataset_files` of :func:`find_dataset_files`.

    Args:
        root (str): The dataset folder.
        inter_file (str, optional): The interaction file, when the folder holds
            several. (default: :obj:`None`)
        category (str, optional): The raw Amazon category when the folder
            holds several. (default: :obj:`None`)
    """
    return read_dataset_files(find_dataset_files(root, inter_file, category))


def dataset_domain(files: DatasetFiles, name: str,
                   domain: Optional[str] = None) -> str:
    r"""Returns the domain that fills Prompt1's ``{dataset name}``:
    :obj:`domain` if given; else, for raw Amazon data in a folder whose name is
    no key of :obj:`DOMAINS` and without ``dataset.json``, the category of
    ``ratings_<Category>.csv``; else the domain named in ``dataset.json``;
    else the one matching the folder name in :obj:`DOMAINS`; else the folder
    name.

    Args:
        files (DatasetFiles): The dataset's files.
        name (str): The dataset (folder) name.
        domain (str, optional): An explicit domain. (default: :obj:`None`)
    """
    if (domain is None and files.format == 'amazon_raw'
            and name.lower() not in DOMAINS and files.info is None):
        # Raw Amazon data names its category: ratings_Toys_and_Games.csv.
        ratings = os.path.basename(files.inter)
        domain = ratings[len('ratings_'):-len('.csv')].replace('_', ' ')
    if domain:
        return domain
    if files.info is not None:
        try:
            with open(files.info, encoding='utf-8') as f:
                info = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f'{files.info}: not a UTF-8 JSON object '
                             f'({str(exc).splitlines()[0]}). Write it as '
                             '{"domain": "..."}') from None
        found = info.get('domain') if isinstance(info, dict) else None
        if found:
            return str(found)
    lowered = name.lower()
    for key, value in DOMAINS.items():
        if key in lowered:
            return value
    return name


class RecDataset(InMemoryDataset):
    r"""A recommendation dataset as one :class:`~torch_geometric.data.HeteroData`
    with :obj:`'user'` and :obj:`'item'` nodes and :obj:`('user', 'interacts',
    'item')` edges carrying :obj:`train_mask`, :obj:`val_mask` and
    :obj:`test_mask` (plus the reverse :obj:`('item', 'rev_interacts',
    'user')`, as :class:`~torch_geometric.transforms.ToUndirected` adds it).

    Reads, from the folder :obj:`root` (which may be read-only):

    * MMRec: ``<name>.inter`` (tab-separated, ``userID itemID x_label``) plus
      side tables keyed by ``itemID`` / ``userID`` (``*.tsv`` / ``*.csv``; an
      image column ``imUrl`` / ``image``, text columns such as ``title``,
      ``brand``, ``categories``, ``description``) and ``*_feat.npy`` modality
      features (row ``i`` = item ``i``);
    * RecBole atomic files: ``<name>.inter`` / ``.item`` / ``.user`` with
      ``field:type`` headers (e.g. ML-100k);
    * raw Amazon 2014 review data: ``ratings_<Category>.csv`` and
      ``meta_<Category>.json.gz`` (k-core filtered, 5 by default).

    Node attributes: :obj:`raw_id` (ids as in the files) on both node types;
    :obj:`has_train` on users; :obj:`text` (a dict of per-field lists),
    :obj:`image` (paths or URLs), :obj:`meta` and modality features such as
    :obj:`image_feat` / :obj:`audio_feat` on items where the files hold them.
    Global attributes: :obj:`name`, :obj:`domain` and :obj:`report`
    (duplicates removed, cold-start users, k-core removals, split).

    The processed file lives in :obj:`$MLLMREC_HOME/processed` (default
    ``~/.cache/mllmrec_pyg``), keyed by a hash of the raw files' content and
    every preprocessing argument: changing either reprocesses.  The raw files
    are :obj:`files` (see :func:`find_dataset_files`), the very files that
    processing reads.  The processed file is only ever loaded with
    :obj:`torch.load(weights_only=True)` (no pickled code runs); one that
    does not load so (crafted, corrupt or truncated) is reprocessed from the
    raw files, with a warning naming it.

    **STATS:**

    .. list-table::
        :widths: 20 10 10 10 25
        :header-rows: 1

        * - Name
          - #users
          - #items
          - #interactions
          - train / valid / test
        * - amazon-baby
          - 19,445
          - 7,050
          - 160,792
          - 118,551 / 20,559 / 21,682
        * - amazon-sports
          - 35,598
          - 18,357
          - 296,337
          - 218,409 / 37,899 / 40,029
        * - ml-100k (MMRec rule, seed 2024)
          - 943
          - 1,682
          - 100,000
          - 80,367 / 9,596 / 10,037
        * - tiktok
          - 9,308
          - 6,710
          - 68,722
          - 59,541 / 3,051 / 6,130

    Args:
        root (str): The dataset folder.
        split (str, optional): :obj:`'auto'` (the file's ``x_label`` if any,
            else :obj:`'mmrec'`), :obj:`'given'`, :obj:`'mmrec'` (MMRec's
            per-user random rule, seeded), :obj:`'user_temporal'` (by
            ``timestamp``, else by MMRec's per-user ``seq_pos``) or
            :obj:`'global_temporal'` (by ``timestamp``).
            (default: :obj:`'auto'`)
        seed (int, optional): Seed of the random split. (default: :obj:`2024`)
        k_core (int, optional): k-core filter threshold; :obj:`None` means 5
            for raw Amazon data and no filtering otherwise. (default:
            :obj:`None`)
        text_fields (Sequence[str], optional): Item text columns, in D^t
            order. (default: :obj:`DEFAULT_TEXT_FIELDS`)
        inter_file (str, optional): The interaction file, when the folder holds
            several. (default: :obj:`None`)
        category (str, optional): The raw Amazon category when the folder
            holds several. (default: :obj:`None`)
        domain (str, optional): Overrides the domain of Prompt1.
            (default: :obj:`None`)
        processed_root (str, optional): Where processed files go.
            (default: :obj:`$MLLMREC_HOME/processed`)
        transform (callable, optional): Applied on every access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Applied before saving; its
            :obj:`repr` is part of the processed file's key.
            (default: :obj:`None`)
        force_reload (bool, optional): Re-process even if a processed file
            exists. (default: :obj:`False`)
        remap_ids (bool, optional): Renumber MMRec's integer ids in id order
            instead of using them as node indices (needed when the largest
            id is far beyond their number; :obj:`raw_id` keeps the file's
            ids, and feature rows are taken at them), with a warning.
            (default: :obj:`False`)
    """

    def __init__(
        self,
        root: str,
        split: str = 'auto',
        seed: int = 2024,
        k_core: Optional[int] = None,
        text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
        inter_file: Optional[str] = None,
        category: Optional[str] = None,
        domain: Optional[str] = None,
        processed_root: Optional[str] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        remap_ids: bool = False,
    ) -> None:
        root = os.path.abspath(os.path.expanduser(root))
        self.name = os.path.basename(root.rstrip(os.sep))
        self.split_method = split
        self.seed = seed
        self.inter_file = inter_file
        self.category = category
        self.text_fields = tuple(text_fields)
        self.remap_ids = remap_ids
        self.files = find_dataset_files(root, inter_file, category)
        self.domain = dataset_domain(self.files, self.name, domain)
        self.k_core = ((5 if self.files.format == 'amazon_raw' else 0)
                       if k_core is None else k_core)
        self.key = hash_params({
            'files': hash_files(self.files.paths),
            'split': split, 'seed': seed, 'k_core': self.k_core,
            'text_fields': list(self.text_fields), 'inter_file': inter_file,
            'category': category, 'domain': self.domain,
            'pre_transform': repr(pre_transform), 'remap_ids': remap_ids,
            'version': PROCESSED_VERSION,
        })[:20]
        self._processed_root = processed_root or os.path.join(
            mllmrec_home(), 'processed')
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload, log=False)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return os.path.join(self._processed_root, f'{self.name}-{self.key}')

    @property
    def raw_file_names(self) -> List[str]:
        return [os.path.relpath(f, self.root) for f in self.files.paths]

    @property
    def processed_file_names(self) -> str:
        return 'data.pt'

    def download(self) -> None:
        raise FileNotFoundError(
            f'{self.root}: the dataset files are missing. Put the MMRec, '
            'RecBole or raw Amazon 2014 files in this folder (see the '
            'README); nothing can be downloaded here')

    def _process(self) -> None:
        # Replaces PyG's, which unpickles pre_transform.pt / pre_filter.pt
        # with weights_only=False (code in them would run); the key already
        # names pre_transform, so neither file is read or written here.
        path = self.processed_paths[0]
        if not self.force_reload and os.path.exists(path):
            try:
                self._loaded: Optional[Tuple[Any, Any]] = load_processed(path)
                return
            except ValueError as exc:
                warnings.warn(f'{exc}; reprocessing it from the raw files in '
                              f'{self.root}', stacklevel=5)
        os.makedirs(self.processed_dir, exist_ok=True)
        self.process()

    def load(self, path: str, data_cls: type = HeteroData) -> None:
        r"""Loads the processed file :obj:`path` with
        :obj:`torch.load(weights_only=True)` only (see
        :func:`load_processed`)."""
        loaded = getattr(self, '_loaded', None)
        self._loaded = None
        if loaded is None:
            try:
                loaded = load_processed(path)
            except ValueError as exc:
                raise ValueError(f'{exc}; the pre_transform must store only '
                                 'tensors and plain Python values') from None
        self.data, self.slices = loaded

    def process(self) -> None:
        log.info('Processing %s', self.root)
        raw = read_dataset_files(self.files)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            data = build_hetero_data(raw, split=self.split_method,
                                     seed=self.seed, k=self.k_core,
                                     text_fields=self.text_fields,
                                     remap_ids=self.remap_ids)
        data.report['warnings'] = [str(w.message) for w in caught]
        for w in caught:
            # Attributed, as before, to PyG's Dataset.__init__ (the caller of
            # _process), which runs processing.
            warnings.warn(w.message, stacklevel=3)
        data.name = self.name
        data.domain = self.domain
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        # Written aside and renamed: an interrupted save leaves no torn file.
        path = self.processed_paths[0]
        self.save([data], path + '.tmp')
        os.replace(path + '.tmp', path)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name})'


def load_processed(path: str) -> Tuple[HeteroData, Any]:
    r"""Loads a processed file written by :class:`RecDataset` (the
    :obj:`(dict, slices, HeteroData)` of
    :meth:`~torch_geometric.data.InMemoryDataset.save`) with
    :obj:`torch.load(weights_only=True)` only, never falling back to a full
    unpickling as :func:`torch_geometric.io.fs.torch_load` does: a file whose
    pickle would run code, or that is corrupt or truncated, is refused.

    Returns the :class:`~torch_geometric.data.HeteroData` and its slices.

    Args:
        path (str): The processed :obj:`data.pt`.

    Raises:
        ValueError: In one line naming :obj:`path`, if it does not load so or
            holds something else.
    """
    try:
        out = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unsafe, corrupt or truncated
        # torch's message runs over lines; keep the one naming the global.
        lines = [line.strip() for line in str(exc).splitlines()
                 if line.strip()]
        reason = next((line for line in lines
                       if re.search('(?i)unsupported|global', line)),
                      lines[0] if lines else '')
        reason = reason.replace('WeightsUnpickler error: ', '')
        reason = reason.split(' Please use')[0][:200]
        reason = f'{type(exc).__name__}: {reason}' if reason else \
            type(exc).__name__
        raise ValueError(f'{path}: cannot load the processed file with '
                         f'weights_only=True ({reason})') from None
    if not (isinstance(out, tuple) and len(out) == 3
            and isinstance(out[0], dict) and out[2] is HeteroData):
        raise ValueError(f'{path}: not a processed HeteroData file '
                         f'(found {type(out).__name__})')
    try:
        return HeteroData.from_dict(out[0]), out[1]
    except Exception as exc:  # noqa: BLE001 - a dict of the wrong shape
        raise ValueError(f'{path}: not a processed HeteroData file '
                         f'({type(exc).__name__}: {exc})') from None


def load_dataset(path: str, **kwargs: Any) -> HeteroData:
    r"""Returns the :class:`~torch_geometric.data.HeteroData` of a dataset.

    Args:
        path (str): A dataset folder (see :class:`RecDataset`), or
            :obj:`'synthetic'` / :obj:`'synthetic:users=500,items=300,seed=0'`
            for the embedded generated catalogue
            (see :class:`~mllmrec_pyg.data.SyntheticCatalog`).
        **kwargs (optional): Arguments of :class:`RecDataset`.
    """
    if path == 'synthetic' or path.startswith('synthetic:'):
        from .synthetic import synthetic_folder
        path = synthetic_folder(path)
    return RecDataset(path, **kwargs)[0]
