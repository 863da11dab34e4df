r"""The ``report.md`` of a run folder: the settings, the protocol in one
line and the metric table, for a person to read."""
from __future__ import annotations

from typing import Any, Dict, List

from .config import ExperimentConfig

#: The metric families and cut-offs of the table.
TABLE_METRICS = ('recall', 'ndcg', 'precision', 'map')
TABLE_KS = (5, 10, 20, 50)


def protocol_line(metrics: Dict[str, Any]) -> str:
    r"""Where the user inputs came from, in one line: TRAINING items, or
    the LEAKED full-history mode, and who wrote the texts."""
    inputs = metrics.get('inputs', {})
    users = str(inputs.get('user_features', 'learned ID embeddings'))
    leaked = bool(inputs.get('leaked')) or 'LEAKED' in users
    head = ('LEAKED: user inputs saw validation and test items' if leaked else
            'user inputs from TRAINING interactions only')
    parts = [head, f"users: {users}"]
    if 'item_features' in inputs:
        parts.append(f"items: {inputs['item_features']}")
    if 'users_with_stand_in' in inputs:
        parts.append(f"{inputs['users_with_stand_in']} users fell back to the stand-in")
    return '; '.join(parts)


def metric_table(metrics: Dict[str, Any]) -> List[str]:
    r"""The Markdown table of R/N/P/MAP at 5/10/20/50 for val and test."""
    header = '| split | ' + ' | '.join(f'{m[0].upper() if m != "map" else "MAP"}@{k}'
                                        for m in TABLE_METRICS for k in TABLE_KS) + ' |'
    lines = [header, '|' + '---|' * (1 + len(TABLE_METRICS) * len(TABLE_KS))]
    for split in ('val', 'test'):
        values = metrics.get(split, {})
        cells = [f'{values[f"{m}@{k}"]:.4f}' if f'{m}@{k}' in values else '-'
                 for m in TABLE_METRICS for k in TABLE_KS]
        lines.append(f'| {split} | ' + ' | '.join(cells) + ' |')
    return lines


def write_report(path: str, config: ExperimentConfig, metrics: Dict[str, Any]) -> None:
    r"""Writes the run's ``report.md``."""
    lines = [f"# {metrics.get('model', config.model_name)} on "
             f"{metrics.get('dataset_name') or config.dataset.get('path')}", '',
             f'Protocol: {protocol_line(metrics)}.', '',
             f"Selected epoch {metrics.get('best_epoch')} of {metrics.get('epochs_trained')} "
             f"({'stopped early' if metrics.get('stopped_early') else 'epoch budget reached'}); "
             f"{metrics.get('selection', '')}.", '']
    lines += metric_table(metrics)
    lines += ['', '## Settings', '', '```json']
    import json
    lines += json.dumps(config.to_dict(), indent=2, default=str).splitlines()
    lines += ['```', '', 'Config layers: ' + (', '.join(config.sources) or 'defaults'), '']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines))
