r"""The dataset of this package: one :class:`~torch_geometric.data.HeteroData`
read from a folder of MMRec, RecBole or raw Amazon 2014 files."""
from __future__ import annotations

import glob
import json
import logging
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from torch_geometric.data import HeteroData, InMemoryDataset

from .build import build_hetero_data
from .hashing import hash_files, hash_params, mllmrec_home
from .readers import (
    DEFAULT_TEXT_FIELDS,
    RawDataset,
    read_amazon_raw,
    read_mmrec_inter,
    read_recbole_inter,
    read_recbole_side,
    read_side_table,
)

log = logging.getLogger(__name__)

#: Bumped whenever the processed layout changes, so old files are not reused.
PROCESSED_VERSION = 1

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


def detect_format(root: str) -> Tuple[str, List[str]]:
    r"""Returns the format of the dataset folder :obj:`root`
    (:obj:`'mmrec'`, :obj:`'recbole'` or :obj:`'amazon_raw'`) and the
    interaction file(s) it will read."""
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
    with open(main[0], encoding='utf-8', errors='replace') as f:
        header = f.readline()
    fields = header.rstrip('\n').split('\t')
    return ('recbole' if any(':' in c for c in fields) else 'mmrec'), main


def read_folder(root: str, inter_file: Optional[str] = None,
                category: Optional[str] = None) -> RawDataset:
    r"""Reads every file of a dataset folder that the package understands."""
    if inter_file is not None:
        path = os.path.join(root, inter_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f'{path}: no such interaction file')
        with open(path, encoding='utf-8', errors='replace') as f:
            fmt = 'recbole' if ':' in f.readline() else 'mmrec'
        inters = [path]
    else:
        fmt, inters = detect_format(root)
    if fmt == 'amazon_raw':
        inter, items, files = read_amazon_raw(root, category)
        items = items.copy()
        return RawDataset(inter=inter, source=files[0], item_table=items,
                          files=files, root=root)
    path = inters[0]
    files = [path]
    if fmt == 'recbole':
        inter = read_recbole_inter(path)
        raw = RawDataset(inter=inter, source=path, files=files, root=root)
        stem = os.path.splitext(path)[0]
        if os.path.exists(stem + '.item'):
            raw.item_table = read_recbole_side(stem + '.item', 'item_id')
            files.append(stem + '.item')
        if os.path.exists(stem + '.user'):
            raw.user_table = read_recbole_side(stem + '.user', 'user_id')
            files.append(stem + '.user')
        return raw
    inter = read_mmrec_inter(path)
    raw = RawDataset(inter=inter, source=path, integer_ids=True, files=files,
                     root=root)
    for side in sorted(glob.glob(os.path.join(root, '*.tsv')) +
                       glob.glob(os.path.join(root, '*.csv'))):
        found = read_side_table(side)
        if found is None:
            continue
        kind, table = found
        files.append(side)
        current = raw.item_table if kind == 'item' else raw.user_table
        if current is not None:
            new_cols = [c for c in table.columns if c not in current.columns]
            table = current.join(table[new_cols], how='outer')
        if kind == 'item':
            raw.item_table = table
        else:
            raw.user_table = table
    for feat in sorted(glob.glob(os.path.join(root, '*_feat.npy'))):
        name = os.path.basename(feat)[:-len('.npy')]
        raw.item_features[name] = np.load(feat)
        files.append(feat)
    return raw


def dataset_domain(root: str, name: str) -> str:
    r"""The domain named in ``dataset.json`` beside the data, else the one
    matching the folder name in :obj:`DOMAINS`, else the folder name."""
    meta = os.path.join(root, 'dataset.json')
    if os.path.exists(meta):
        with open(meta) as f:
            domain = json.load(f).get('domain')
        if domain:
            return str(domain)
    lowered = name.lower()
    for key, domain in DOMAINS.items():
        if key in lowered:
            return domain
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
    every preprocessing argument: changing either reprocesses.

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
            per-user random rule, seeded), :obj:`'user_temporal'` or
            :obj:`'global_temporal'`. (default: :obj:`'auto'`)
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
    ) -> None:
        root = os.path.abspath(os.path.expanduser(root))
        self.name = os.path.basename(root.rstrip(os.sep))
        self.split_method = split
        self.seed = seed
        self.inter_file = inter_file
        self.category = category
        self.text_fields = tuple(text_fields)
        self._files = self._input_files(root)
        ratings = [os.path.basename(f) for f in self._files
                   if os.path.basename(f).startswith('ratings_')]
        fmt = 'amazon_raw' if ratings else 'other'
        if (domain is None and ratings and self.name.lower() not in DOMAINS
                and not os.path.exists(os.path.join(root, 'dataset.json'))):
            # Raw Amazon data names its category: ratings_Toys_and_Games.csv.
            domain = ratings[0][len('ratings_'):-len('.csv')].replace('_', ' ')
        self.domain = domain or dataset_domain(root, self.name)
        self.k_core = (5 if fmt == 'amazon_raw' else 0) if k_core is None else k_core
        self.key = hash_params({
            'files': hash_files(self._files),
            'split': split, 'seed': seed, 'k_core': self.k_core,
            'text_fields': list(self.text_fields), 'inter_file': inter_file,
            'category': category, 'domain': self.domain,
            'pre_transform': repr(pre_transform), 'version': PROCESSED_VERSION,
        })[:20]
        self._processed_root = processed_root or os.path.join(
            mllmrec_home(), 'processed')
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload, log=False)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    def _input_files(self, root: str) -> List[str]:
        # The files whose bytes make up the processed key: everything that
        # read_folder may read, found the same way it finds them.
        if self.inter_file is not None:
            inters = [os.path.join(root, self.inter_file)]
            fmt = 'explicit'
        else:
            fmt, inters = detect_format(root)
        if fmt == 'amazon_raw':
            cat = self.category
            ratings = [p for p in inters if cat is None or
                       os.path.basename(p) == f'ratings_{cat}.csv']
            metas = [p.replace('ratings_', 'meta_')[:-len('.csv')] + '.json.gz'
                     for p in ratings]
            return ratings + [m for m in metas if os.path.exists(m)]
        extra: List[str] = []
        for pattern in ('*.tsv', '*.csv', '*_feat.npy', '*.item', '*.user',
                        'dataset.json'):
            extra += glob.glob(os.path.join(root, pattern))
        return [inters[0]] + sorted(set(extra) - {inters[0]})

    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return os.path.join(self._processed_root, f'{self.name}-{self.key}')

    @property
    def raw_file_names(self) -> List[str]:
        return [os.path.relpath(f, self.root) for f in self._files]

    @property
    def processed_file_names(self) -> str:
        return 'data.pt'

    def download(self) -> None:
        raise FileNotFoundError(
            f'{self.root}: the dataset files are missing. Put the MMRec, '
            'RecBole or raw Amazon 2014 files in this folder (see the '
            'README); nothing can be downloaded here')

    def process(self) -> None:
        log.info('Processing %s', self.root)
        raw = read_folder(self.root, self.inter_file, self.category)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            data = build_hetero_data(raw, split=self.split_method,
                                     seed=self.seed, k=self.k_core,
                                     text_fields=self.text_fields)
        data.report['warnings'] = [str(w.message) for w in caught]
        for w in caught:
            warnings.warn(w.message, stacklevel=2)
        data.name = self.name
        data.domain = self.domain
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        self.save([data], self.processed_paths[0])

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name})'


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
