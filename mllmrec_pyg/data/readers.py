r"""Readers for the raw formats of recommendation datasets.

Each reader returns plain :class:`pandas.DataFrame` objects with canonical
column names (``user``, ``item`` as strings of the file's ids, optional
``label`` (0/1/2 = train/valid/test), ``time``, ``rating``, and ``line``, the
1-based line of the row in its file) so that errors downstream can still name
the file and line.  Malformed input raises :class:`ValueError` naming the file,
the line and the fix.
"""
from __future__ import annotations

import ast
import csv
import glob
import gzip
import json
import os
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import pandas as pd

#: Column names of item side tables that hold an image location.
IMAGE_COLUMNS = ('image', 'imUrl', 'image_url', 'image_path', 'img')
#: Item side-table columns treated as text fields, in D^t order.
DEFAULT_TEXT_FIELDS = ('title', 'brand', 'categories', 'description',
                       'idgenrec_text', 'movie_title', 'release_year', 'class')


@dataclass
class RawDataset:
    r"""What a reader found in a dataset folder, before splitting.

    Args:
        inter (pandas.DataFrame): The interactions, in the canonical columns.
        source (str): The interaction file.
        integer_ids (bool, optional): Whether ids are MMRec's 0-based integers
            (node index == file id). (default: :obj:`False`)
        item_table (pandas.DataFrame, optional): Item side information,
            indexed by raw id. (default: :obj:`None`)
        user_table (pandas.DataFrame, optional): User side information,
            indexed by raw id. (default: :obj:`None`)
        item_features (Dict[str, numpy.ndarray], optional): Modality features
            by name, row ``i`` = item ``i``. (default: :obj:`{}`)
        files (List[str], optional): The files that contributed data.
            (default: :obj:`[]`)
        root (str, optional): The dataset folder, against which relative image
            paths resolve. (default: :obj:`''`)
        item_feature_files (Dict[str, str], optional): The file of each of
            :obj:`item_features`, named in errors. (default: :obj:`{}`)
    """
    inter: pd.DataFrame
    source: str
    integer_ids: bool = False
    item_table: Optional[pd.DataFrame] = None
    user_table: Optional[pd.DataFrame] = None
    item_features: Dict[str, np.ndarray] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)
    root: str = ''
    item_feature_files: Dict[str, str] = field(default_factory=dict)


def _error(path: str, line: int | None, what: str, fix: str) -> ValueError:
    where = f'{path}, line {line}' if line is not None else path
    return ValueError(f'{where}: {what}. {fix}')


def _encoding_error(path: str) -> ValueError:
    r"""The error for a file that is not UTF-8 text, naming the line and the
    first offending byte (or UTF-16, whose byte-order mark says so)."""
    with open(path, 'rb') as f:
        data = f.read()
    if data.startswith((b'\xff\xfe', b'\xfe\xff')):
        return _error(path, None, 'the file is UTF-16 encoded, not UTF-8',
                      'Save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)')
    try:
        data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line = data.count(b'\n', 0, exc.start) + 1
        return _error(path, line, f'byte 0x{data[exc.start]:02x} (offset '
                      f'{exc.start}) is not UTF-8', 'Save the file as UTF-8 '
                      '(e.g. iconv -f latin1 -t UTF-8)')
    return _error(path, None, 'the file is not UTF-8 text', 'Save it as UTF-8')


def _check_text(path: str) -> None:
    r"""Refuses UTF-16 and binary files from their first bytes (their NUL
    bytes would otherwise parse as text)."""
    with open(path, 'rb') as f:
        head = f.read(1 << 12)
    if head.startswith((b'\xff\xfe', b'\xfe\xff')):
        raise _encoding_error(path)
    if b'\0' in head:
        raise _error(path, head[:head.index(b'\0')].count(b'\n') + 1,
                     'the file holds NUL bytes (UTF-16 without a byte-order '
                     'mark, or not text)', 'Save it as UTF-8 text')


def _scan_rows(path: str, sep: str, header: bool = True,
               num_fields: Optional[int] = None) -> np.ndarray:
    r"""Returns the 1-based line of every non-blank data row of the delimited
    text file :obj:`path` (the header excluded), after checking that the file
    is UTF-8 and that every row has as many fields as the header (or
    :obj:`num_fields`), raising :class:`ValueError` naming the file and the
    line otherwise.

    Args:
        path (str): The file.
        sep (str): The field separator; tab-separated files are read without
            quoting, as :func:`_read_table` reads them.
        header (bool, optional): Whether the first row is a header.
            (default: :obj:`True`)
        num_fields (int, optional): The number of fields of every row;
            :obj:`None` takes the header's. (default: :obj:`None`)
    """
    _check_text(path)
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if sep == '\t' else csv.QUOTE_MINIMAL
    lines = array('q')
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 2**31 - 1))  # long descriptions are fine
    line = 0
    try:
        with open(path, encoding='utf-8-sig', newline='') as f:
            reader = csv.reader(f, delimiter=sep, quoting=quoting)
            expect_header = header
            for row in reader:
                start, line = line + 1, reader.line_num
                if not row:
                    continue
                if expect_header:
                    expect_header = False
                    num_fields = len(row) if num_fields is None else num_fields
                    continue
                if num_fields is None:
                    num_fields = len(row)
                if len(row) != num_fields:
                    what = 'the header has' if header else 'expected'
                    raise _error(path, start, f'{len(row)} field(s) where '
                                 f'{what} {num_fields}', 'Give every row one '
                                 f'value per column, separated by {sep!r}')
                lines.append(start)
    except UnicodeDecodeError:
        raise _encoding_error(path) from None
    except csv.Error as exc:
        raise _error(path, line + 1, f'unreadable row ({exc})',
                     'Fix the quoting of that row') from None
    finally:
        csv.field_size_limit(limit)
    return np.frombuffer(lines, dtype=np.int64).copy() if lines else \
        np.zeros(0, dtype=np.int64)


def _read_table(path: str, sep: str | None = None
                ) -> Tuple[pd.DataFrame, np.ndarray]:
    r"""Reads the delimited table :obj:`path` (all values as strings) and
    returns it with the 1-based line of each row (see :func:`_scan_rows`)."""
    if os.path.getsize(path) == 0:
        raise _error(path, None, 'the file is empty',
                     'Expected a header line and at least one row')
    if sep is None:
        with open(path, encoding='utf-8', errors='replace') as f:
            header = f.readline()
        sep = '\t' if '\t' in header else ','
    lines = _scan_rows(path, sep)
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                     na_filter=False, quoting=3 if sep == '\t' else 0,
                     encoding='utf-8-sig')
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) != len(lines):
        raise _error(path, None, f'{len(lines)} rows counted but {len(df)} '
                     'parsed', 'Check the file for stray quote characters')
    return df, lines


def _integer_column(df: pd.DataFrame, col: str, path: str,
                    allowed: Optional[set] = None) -> np.ndarray:
    values = pd.to_numeric(df[col].str.strip(), errors='coerce')
    bad = values.isna() | (values % 1 != 0)
    if allowed is None:
        bad |= values < 0
    else:
        bad |= ~values.isin(list(allowed))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raw = df[col].iloc[row]
        need = ('a non-negative integer' if allowed is None else
                f'one of {sorted(allowed)}')
        raise _error(path, int(df['line'].iloc[row]),
                     f"column '{col}' holds {raw!r}",
                     f'Each {col} must be {need}')
    return values.to_numpy().astype(np.int64)


def read_mmrec_inter(path: str) -> pd.DataFrame:
    r"""Reads an MMRec ``.inter`` file: tab-separated, header
    ``userID itemID x_label`` (``x_label`` 0/1/2 = train/valid/test; optional,
    and optional ``timestamp`` / ``rating`` columns, and ``seq_pos``, each
    user's chronological position of the interaction, read as :obj:`order`:
    it orders a user's interactions for the per-user temporal split, but
    is no global clock)."""
    df, lines = _read_table(path, sep='\t')
    if len(df) == 0:
        raise _error(path, None, 'the file has a header but no rows',
                     'Expected one interaction per line')
    df['line'] = lines
    missing = [c for c in ('userID', 'itemID') if c not in df.columns]
    if missing:
        raise _error(path, 1, f'missing column(s) {missing} (found '
                     f'{list(df.columns[:-1])})',
                     "The header must name 'userID' and 'itemID' (and "
                     "optionally 'x_label'), tab-separated")
    out = pd.DataFrame({
        'user': _integer_column(df, 'userID', path),
        'item': _integer_column(df, 'itemID', path),
        'line': df['line'].to_numpy(),
    })
    if 'x_label' in df.columns:
        out['label'] = _integer_column(df, 'x_label', path, {0, 1, 2})
    for col, dst in (('timestamp', 'time'), ('rating', 'rating'), ('seq_pos', 'order')):
        if col in df.columns:
            values = pd.to_numeric(df[col], errors='coerce')
            if values.isna().any():
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise _error(path, int(lines[row]), f"column '{col}' holds "
                             f'{df[col].iloc[row]!r}', f'Each {col} must be a number')
            out[dst] = values.to_numpy()
    return out


def _recbole_header(path: str, df: pd.DataFrame) -> pd.DataFrame:
    names = []
    for col in df.columns:
        if ':' not in col:
            raise _error(path, 1, f"header field '{col}' has no ':type'",
                         "RecBole atomic files name each field 'name:type' "
                         "(e.g. 'user_id:token')")
        names.append(col.split(':', 1)[0])
    df.columns = names
    return df


def read_recbole_inter(path: str) -> pd.DataFrame:
    r"""Reads a RecBole atomic ``.inter`` file (tab-separated,
    ``field:type`` header, e.g. ``user_id:token item_id:token rating:float
    timestamp:float``)."""
    df, lines = _read_table(path, sep='\t')
    df = _recbole_header(path, df)
    if len(df) == 0:
        raise _error(path, None, 'the file has a header but no rows',
                     'Expected one interaction per line')
    df['line'] = lines
    missing = [c for c in ('user_id', 'item_id') if c not in df.columns]
    if missing:
        raise _error(path, 1, f'missing field(s) {missing}',
                     "The header must name 'user_id:token' and 'item_id:token'")
    out = pd.DataFrame({'user': df['user_id'].str.strip(),
                        'item': df['item_id'].str.strip(),
                        'line': df['line'].to_numpy()})
    for src, dst in (('timestamp', 'time'), ('rating', 'rating'),
                     ('label', 'label')):
        if src in df.columns:
            values = pd.to_numeric(df[src], errors='coerce')
            if values.isna().any():
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise _error(path, int(lines[row]), f"field '{src}' holds "
                             f'{df[src].iloc[row]!r}', f'Each {src} must be a number')
            out[dst] = values.to_numpy()
    return out


def read_recbole_side(path: str, key: str) -> pd.DataFrame:
    r"""Reads a RecBole ``.item`` / ``.user`` file, indexed by :obj:`key`
    (``item_id`` or ``user_id``)."""
    df = _recbole_header(path, _read_table(path, sep='\t')[0])
    if key not in df.columns:
        raise _error(path, 1, f"missing field '{key}'",
                     f"The header must name '{key}:token'")
    return df.set_index(df[key].str.strip()).drop(columns=[key])


def read_side_table(path: str) -> tuple[str, pd.DataFrame] | None:
    r"""Reads an MMRec-style side table (tsv or csv with an ``itemID`` or
    ``userID`` column).  Returns :obj:`('item' | 'user', table)` indexed by the
    id as a string, or :obj:`None` when the file has neither column (read
    no further than its header)."""
    _check_text(path)
    with open(path, encoding='utf-8-sig', errors='replace', newline='') as f:
        header = f.readline()
    sep = '\t' if '\t' in header else ','
    fields = next(csv.reader([header], delimiter=sep), [])
    if header and not {'itemID', 'userID'} & {c.strip() for c in fields}:
        return None
    df, lines = _read_table(path, sep)
    for key, kind in (('itemID', 'item'), ('userID', 'user')):
        if key in df.columns:
            ids = _integer_column(df.assign(line=lines), key, path)
            df = df.drop(columns=[key])
            df.index = pd.Index(ids.astype(str))
            df = df[~df.index.duplicated(keep='first')]
            return kind, df
    return None


def _parse_literal(path: str, number: int, line: str):
    r"""Parses one line of an Amazon 2014 meta file: a Python literal (the
    format of the 2014 dumps) or JSON."""
    try:
        return ast.literal_eval(line)
    except (ValueError, SyntaxError, TypeError, RecursionError,
            MemoryError) as exc:
        deep = (isinstance(exc, (RecursionError, MemoryError))
                or 'too many nested' in str(exc))
    try:
        return json.loads(line)
    except (ValueError, RecursionError, MemoryError) as exc:
        deep |= isinstance(exc, (RecursionError, MemoryError))
        what = ('nested too deeply to parse' if deep else
                'not a Python-literal or JSON object')
        raise _error(path, number, what, 'Each line of an Amazon 2014 meta '
                     'file holds one product dict') from None


def read_item_features(path: str) -> np.ndarray:
    r"""Reads an MMRec ``*_feat.npy`` modality feature file: a 2-D numeric
    array, row ``i`` = item ``i``, every value finite (after the cast to
    float32 the graph stores).  Pickled or object arrays are never loaded.

    Raises :class:`ValueError` naming the file when it is no such array
    (unreadable, 1-D or 3-D, object or string values) or holds NaN or
    infinite values (with their count).

    Args:
        path (str): The ``.npy`` file.
    """
    fix = ('Save a 2-D float array [num_items, dim] with numpy.save '
           '(row i = item i)')
    try:
        feat = np.load(path, allow_pickle=False)
    except ValueError as exc:
        what = ('it holds an object (pickled) array' if 'pickle' in str(exc)
                else f'not a readable .npy file ({exc})')
        raise _error(path, None, what, fix) from None
    except (OSError, EOFError) as exc:
        raise _error(path, None, f'not a readable .npy file ({exc})',
                     fix) from None
    if not isinstance(feat, np.ndarray):  # an .npz archive
        raise _error(path, None, 'not a .npy array (an .npz archive?)', fix)
    if feat.dtype.kind not in 'biuf':
        raise _error(path, None, f'it holds {feat.dtype} values, not numbers',
                     fix)
    if feat.ndim != 2:
        raise _error(path, None, f'it is {feat.ndim}-D (shape '
                     f'{tuple(feat.shape)}), not [num_items, dim]', fix)
    if feat.dtype.kind == 'f':
        bad = first = 0
        block = max(1, (1 << 22) // max(1, feat.shape[1]))
        for start in range(0, len(feat), block):
            with np.errstate(over='ignore'):  # float64 beyond float32: inf
                part = feat[start:start + block].astype(np.float32, copy=False)
            rows = ~np.isfinite(part)
            count = int(rows.sum())
            if count and not bad:
                first = start + int(np.flatnonzero(rows.any(axis=1))[0])
            bad += count
        if bad:
            raise _error(path, None, f'it holds {bad} NaN or infinite '
                         f'value(s) (as float32; first in row {first})',
                         'Replace them with finite values')
    return feat


def _literal_lines(path: str):
    opener = gzip.open if path.endswith('.gz') else open
    number = 0
    try:
        with opener(path, 'rt', encoding='utf-8') as f:  # type: ignore[operator]
            for number, line in enumerate(f, start=1):
                line = line.strip()
                if line:
                    yield _parse_literal(path, number, line)
    except UnicodeDecodeError:
        raise _error(path, number + 1, 'not UTF-8 text',
                     'Save the file as UTF-8') from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _error(path, None, f'not a valid gzip file ({exc})',
                     'The download is corrupt or truncated: download it '
                     'again') from None


def _join_categories(value) -> str:
    if isinstance(value, (list, tuple)):
        parts = [' > '.join(map(str, v)) if isinstance(v, (list, tuple))
                 else str(v) for v in value]
        return ' | '.join(p for p in parts if p)
    return '' if value is None else str(value)


def find_amazon_raw(folder: str, category: Optional[str] = None
                    ) -> Tuple[str, str]:
    r"""Returns the paths of the ``ratings_<Category>.csv`` and
    ``meta_<Category>.json.gz`` files of the raw Amazon 2014 category in
    :obj:`folder`, raising :class:`FileNotFoundError` (with where to get them)
    when either is missing or the category is ambiguous.

    Args:
        folder (str): The dataset folder.
        category (str, optional): The category, when :obj:`folder` holds
            several. (default: :obj:`None`)
    """
    ratings = sorted(glob.glob(os.path.join(folder, 'ratings_*.csv')))
    if category is not None:
        ratings = [p for p in ratings
                   if os.path.basename(p) == f'ratings_{category}.csv']
    if len(ratings) != 1:
        raise FileNotFoundError(
            f"{folder}: expected exactly one 'ratings_<Category>.csv' "
            f'(found {[os.path.basename(p) for p in ratings]}). Download it '
            'from the Amazon review data (2014) page, '
            'https://jmcauley.ucsd.edu/data/amazon/links.html ("ratings only" '
            'and "metadata" of your category), and place both files in '
            f'{folder}')
    cat = os.path.basename(ratings[0])[len('ratings_'):-len('.csv')]
    meta = os.path.join(folder, f'meta_{cat}.json.gz')
    if not os.path.exists(meta):
        raise FileNotFoundError(
            f"{folder}: 'meta_{cat}.json.gz' is missing. Download the "
            f'metadata of {cat} from the Amazon review data (2014) page and '
            f'place it beside {os.path.basename(ratings[0])}')
    return ratings[0], meta


def read_amazon_ratings(path: str) -> pd.DataFrame:
    r"""Reads a raw Amazon 2014 ``ratings_<Category>.csv`` file (lines
    ``user,item,rating,timestamp``, no header) into the canonical columns
    ``user``, ``item``, ``rating``, ``time`` and ``line``.

    Args:
        path (str): The ratings file.
    """
    lines = _scan_rows(path, ',', header=False, num_fields=4)
    if len(lines) == 0:
        raise _error(path, None, 'the file is empty',
                     'Expected lines user,item,rating,timestamp')
    df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                     names=['user', 'item', 'rating', 'time'],
                     encoding='utf-8-sig')
    if len(df) != len(lines):
        raise _error(path, None, f'{len(lines)} rows counted but {len(df)} '
                     'parsed', 'Check the file for stray quote characters')
    df['line'] = lines
    for col in ('rating', 'time'):
        values = pd.to_numeric(df[col], errors='coerce')
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise _error(path, int(lines[row]), f'{col} {df[col].iloc[row]!r} '
                         'is not a number', 'Expected lines '
                         'user,item,rating,timestamp')
        df[col] = values.to_numpy()
    return df


#: The columns of the item table read from an Amazon 2014 meta file.
AMAZON_META_COLUMNS = ('asin', 'title', 'brand', 'categories', 'description',
                       'imUrl', 'price')


def read_amazon_meta(path: str) -> pd.DataFrame:
    r"""Reads a raw Amazon 2014 ``meta_<Category>.json.gz`` file (one
    Python-literal or JSON product dict per line) into an item table indexed
    by asin, with the columns :obj:`AMAZON_META_COLUMNS` (the first line of
    each asin wins; lines without an asin are skipped).

    Args:
        path (str): The meta file (gzipped or plain).
    """
    rows = []
    for obj in _literal_lines(path):
        if not isinstance(obj, dict) or 'asin' not in obj:
            continue
        rows.append({
            'asin': str(obj['asin']),
            'title': str(obj.get('title', '') or ''),
            'brand': str(obj.get('brand', '') or ''),
            'categories': _join_categories(obj.get('categories')),
            'description': str(obj.get('description', '') or ''),
            'imUrl': str(obj.get('imUrl', '') or ''),
            'price': '' if obj.get('price') is None else str(obj.get('price')),
        })
    items = pd.DataFrame(rows, columns=list(AMAZON_META_COLUMNS))
    return items.drop_duplicates('asin').set_index('asin', drop=False)


def read_amazon_raw(folder: str, category: Optional[str] = None
                    ) -> Tuple[pd.DataFrame, pd.DataFrame, List[str]]:
    r"""Reads the raw Amazon 2014 review data of one category:
    ``ratings_<Category>.csv`` (``user,item,rating,timestamp``, no header) and
    ``meta_<Category>.json.gz`` (one Python-literal product dict per line),
    as found by :func:`find_amazon_raw`.

    Returns the interactions (:func:`read_amazon_ratings`), the item table
    (:func:`read_amazon_meta`; indexed by asin; ``title``, ``brand``,
    ``categories``, ``description``, ``imUrl``, ``price``) and the files read.

    Args:
        folder (str): The dataset folder.
        category (str, optional): The category, when :obj:`folder` holds
            several. (default: :obj:`None`)
    """
    ratings, meta = find_amazon_raw(folder, category)
    return read_amazon_ratings(ratings), read_amazon_meta(meta), [ratings, meta]
