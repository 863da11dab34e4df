r"""Writing and reading the run artefacts (TSV, JSON lines, JSON)."""
from __future__ import annotations

import csv
import os
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from torch_geometric.data import HeteroData

from mllmrec_pyg.data.interactions import check_split_fingerprint

#: The columns of :obj:`preferences.tsv`, in order: the user's raw id, the
#: preference, :obj:`"train"` or :obj:`"full_history"` (LEAKED), and the
#: :func:`~mllmrec_pyg.data.split_fingerprint` of the training edges the
#: preference was built on (the same on every row).
PREFERENCE_COLUMNS: Tuple[str, ...] = (
    'user', 'preference', 'preference_source', 'split_fingerprint')


def one_line(text: str) -> str:
    r"""Collapses every run of whitespace (tabs, newlines) to one space, so
    a generation is one TSV field."""
    return ' '.join(text.split())


def write_tsv(path: str, header: Sequence[str],
              rows: Iterable[Sequence[str]]) -> None:
    r"""Writes a tab-separated file with a header; fields are single-line
    and quoted only where they hold a quote character (so :obj:`pandas`
    and :obj:`csv` read them back unchanged)."""
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f, delimiter='\t', quoting=csv.QUOTE_MINIMAL,
                            lineterminator='\n')
        writer.writerow(header)
        for row in rows:
            writer.writerow([one_line(str(value)) for value in row])


def write_json(path: str, value: Mapping[str, Any]) -> None:
    r"""Writes :obj:`value` as indented JSON (UTF-8 text, other objects as
    their :obj:`str`), whole or not at all."""
    from mllmrec_pyg.utils.paths import write_json as write_whole
    write_whole(path, value, default=str, ensure_ascii=False)


def read_descriptions_tsv(path: str, data: HeteroData) -> Dict[int, str]:
    r"""Reads the :obj:`descriptions.tsv` of ``mllmrec describe`` (item id,
    description) into a mapping from item index of :obj:`data` to text.

    Raises:
        FileNotFoundError: If :obj:`path` does not exist.
        ValueError: If a line is malformed or names an unknown item.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image descriptions '{path}' not found "
                                '(write them with: mllmrec describe ...)')
    index = {raw: i for i, raw in enumerate(data['item'].raw_id)}
    out: Dict[int, str] = {}
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.reader(f, delimiter='\t')
        for number, row in enumerate(reader, start=1):
            if number == 1 and row[:1] == ['item']:
                continue
            if len(row) < 2:
                raise ValueError(f'{path}, line {number}: expected "item id '
                                 '<TAB> description"')
            if row[0] not in index:
                raise ValueError(f"{path}, line {number}: item '{row[0]}' is "
                                 'not in the dataset (was the file written '
                                 'for another dataset?)')
            out[index[row[0]]] = row[1]
    return out


def read_preferences_tsv(path: str, data: HeteroData
                         ) -> Tuple[Dict[int, str], List[str]]:
    r"""Reads the :obj:`preferences.tsv` of ``mllmrec prefer``
    (:obj:`PREFERENCE_COLUMNS`) into a mapping from user index of
    :obj:`data` to text, and the distinct :obj:`preference_source` values
    (:obj:`"full_history"` means the texts saw validation and test items).

    The file must have been built on the split of :obj:`data`: its
    :obj:`split_fingerprint` column is checked with
    :func:`~mllmrec_pyg.data.check_split_fingerprint` (preferences from
    another split may have seen this split's test items).

    Raises:
        FileNotFoundError: If :obj:`path` does not exist.
        ValueError: If the header lacks :obj:`user` / :obj:`preference` or
            :obj:`split_fingerprint`, a row names an unknown user, or the
            file was built on another split.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Preferences '{path}' not found "
                                '(write them with: mllmrec prefer ...)')
    index = {raw: i for i, raw in enumerate(data['user'].raw_id)}
    texts: Dict[int, str] = {}
    sources = set()
    fingerprints = set()
    with open(path, encoding='utf-8', newline='') as f:
        # Quoted only where a field holds a quote character (write_tsv).
        reader = csv.DictReader(f, delimiter='\t')
        if not {'user', 'preference'} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected a header with 'user' and "
                             f"'preference' columns (got {reader.fieldnames})")
        if 'split_fingerprint' not in (reader.fieldnames or ()):
            check_split_fingerprint(None, data, path)
        for number, row in enumerate(reader, start=2):
            if row['user'] not in index:
                raise ValueError(f"{path}, line {number}: user '{row['user']}' "
                                 'is not in the dataset')
            texts[index[row['user']]] = row['preference'] or ''
            sources.add(row.get('preference_source') or 'unknown')
            fingerprints.add(row['split_fingerprint'] or '')
    for found in sorted(fingerprints):
        check_split_fingerprint(found, data, path)
    return texts, sorted(sources)
