r"""Writing and reading the run artefacts (TSV, JSON lines, JSON)."""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Dict, Iterable, Mapping, Sequence

from torch_geometric.data import HeteroData


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
    r"""Writes :obj:`value` as indented JSON."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(value, f, indent=2, ensure_ascii=False, default=str)
        f.write('\n')


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
