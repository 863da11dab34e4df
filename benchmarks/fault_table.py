r"""Re-runs a table of bad inputs and faults through the ``mllmrec`` command
line, each in a fresh process with its own ``MLLMREC_HOME``, and classifies
what happened:

* ``clear``: exit 2 (or 1 for a failed run) with ONE ``mllmrec CMD: error:``
  line naming the file or option (and no traceback);
* ``handled``: the command did the right thing (exit 0; e.g. a corrupt
  processed file is reprocessed, a crafted pickle is not executed);
* ``traceback``: a Python traceback reached the user;
* ``silent``: exit 0 without the expected warning or behaviour;
* ``security``: a crafted file executed code, or a secret was echoed.

    python benchmarks/fault_table.py [--keep DIR]

The per-row assertions live in ``tests/faults/``; this script is the
whole-table view with counts, as a user would meet each fault.
"""
from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

SPEC = 'synthetic:users=30,items=20,seed=1'


def tiny(root: str, inter: Optional[List[str]] = None, items: bool = True) -> str:
    os.makedirs(root, exist_ok=True)
    rows = inter or ['userID\titemID\tx_label'] + [
        f'{u}\t{(u + j) % 8}\t{0 if j < 3 else j - 2}' for u in range(6) for j in range(5)]
    with open(os.path.join(root, 'tiny.inter'), 'w') as f:
        f.write('\n'.join(rows) + '\n')
    if items:
        with open(os.path.join(root, 'tiny.items.tsv'), 'w') as f:
            f.write('itemID\ttitle\n' + ''.join(f'{i}\tmug number {i}\n' for i in range(8)))
    return root


class Exploit:
    def __reduce__(self):  # noqa: D105 - a crafted pickle
        return (os.system, (f'touch {MARKER}',))


MARKER = ''


@dataclass
class Row:
    name: str
    setup: Callable[[str], List[str]]  # returns the argv after `mllmrec`
    expect: str  # 'clear' | 'handled'
    needle: str  # a substring the stderr (clear) or stdout+stderr (handled) must hold
    check: Optional[Callable[[str], bool]] = None  # extra 'handled' check on the work dir


def rows() -> List[Row]:
    def out_is_file(d: str) -> List[str]:
        open(os.path.join(d, 'out'), 'w').close()
        return ['train', SPEC, '--model', 'bpr', '--out', os.path.join(d, 'out')]

    def corrupt_cache(d: str) -> List[str]:
        with open(os.path.join(d, 'c.sqlite'), 'wb') as f:
            f.write(b'not a database at all' * 50)
        return ['prefer', SPEC, '--backend', 'openai', '--base-url', 'http://127.0.0.1:9/v1',
                '--cache', os.path.join(d, 'c.sqlite'), '--out', os.path.join(d, 'p')]

    def corrupt_checkpoint(d: str) -> List[str]:
        os.makedirs(os.path.join(d, 'run'))
        with open(os.path.join(d, 'run', 'checkpoint.pt'), 'wb') as f:
            f.write(b'\x80\x02garbage')
        return ['train', SPEC, '--model', 'bpr', '--epochs', '1', '--resume', '--out',
                os.path.join(d, 'run')]

    def processed(d: str, payload: bytes) -> List[str]:
        data = tiny(os.path.join(d, 'tiny'))
        # Process once, then overwrite the processed file.
        env = dict(os.environ, MLLMREC_HOME=os.path.join(d, 'home'))
        subprocess.run([sys.executable, '-m', 'mllmrec_pyg', 'stats', data], env=env,
                       capture_output=True, check=True)
        for root, _, files in os.walk(os.path.join(d, 'home', 'processed')):
            for name in files:
                if name == 'data.pt':
                    with open(os.path.join(root, name), 'wb') as f:
                        f.write(payload)
        return ['stats', data]

    def config(d: str, text: str, name: str = 'c.yaml') -> List[str]:
        with open(os.path.join(d, name), 'w') as f:
            f.write(text)
        return ['train', SPEC, '--model', 'bpr', '--config', os.path.join(d, name), '--out',
                os.path.join(d, 'o')]

    def inter(d: str, lines: List[str], encoding: str = 'utf-8') -> List[str]:
        root = tiny(os.path.join(d, 'tiny'))
        with open(os.path.join(root, 'tiny.inter'), 'w', encoding=encoding) as f:
            f.write('\n'.join(lines) + '\n')
        return ['stats', root]

    def feature(d: str, array: np.ndarray) -> List[str]:
        root = tiny(os.path.join(d, 'tiny'))
        np.save(os.path.join(root, 'image_feat.npy'), array, allow_pickle=True)
        return ['stats', root]

    def gz(d: str) -> List[str]:
        root = os.path.join(d, 'raw')
        os.makedirs(root)
        with open(os.path.join(root, 'ratings_Toys.csv'), 'w') as f:
            f.write(''.join(f'u{u},i{(u + j) % 6},5.0,{100 + j}\n' for u in range(8)
                            for j in range(5)))
        with open(os.path.join(root, 'meta_Toys.json.gz'), 'wb') as f:
            f.write(b'\x1f\x8b\x08\x00garbage')
        return ['stats', root]

    base = ['userID\titemID\tx_label']
    good = [f'{u}\t{(u + j) % 8}\t{0 if j < 3 else j - 2}' for u in range(6) for j in range(5)]
    return [
        Row('--out is a file', out_is_file, 'clear', 'out'),
        Row('corrupt SQLite cache', corrupt_cache, 'clear', 'c.sqlite'),
        Row('corrupt checkpoint with --resume', corrupt_checkpoint, 'clear', 'checkpoint.pt'),
        Row('truncated processed data.pt', lambda d: processed(d, b'\x80\x04trunc'),
            'handled', 'reprocessing'),
        Row('crafted processed data.pt (os.system)',
            lambda d: processed(d, pickle.dumps(Exploit())), 'handled', 'reprocessing',
            check=lambda d: not os.path.exists(MARKER)),
        Row('bad YAML', lambda d: config(d, 'graph: [alpha: 0.4\n'), 'clear', 'invalid YAML'),
        Row('misspelt graph key', lambda d: config(d, 'graph:\n  alpah: 0.4\n'), 'clear',
            "did you mean 'graph.alpha'"),
        Row('misspelt dataset key', lambda d: config(d, 'dataset:\n  splt: mmrec\n'), 'clear',
            "did you mean 'dataset.split'"),
        Row('missing config file', lambda d: ['train', SPEC, '--model', 'bpr', '--config',
                                              os.path.join(d, 'nope.json'), '--out', d],
            'clear', 'nope.json'),
        Row('unknown recipe', lambda d: ['train', SPEC, '--model', 'bpr', '--recipe',
                                         'amazon-sprots', '--out', d], 'clear',
            "did you mean 'amazon-sports'"),
        Row('no training edges', lambda d: inter(d, base + [
            f'{u}\t{u % 8}\t2' for u in range(6)]), 'clear', 'tiny.inter'),
        Row('UTF-16 interaction file', lambda d: inter(d, base + good, 'utf-16'), 'clear',
            'UTF-16'),
        Row('row with a missing field', lambda d: inter(d, base + good[:4] + ['3\t4'] + good[4:]),
            'clear', 'line 6'),
        Row('id 10**12 in a tiny file', lambda d: inter(d, base + good + ['1\t1000000000000\t0']),
            'clear', 'far beyond'),
        Row('1-D feature file', lambda d: feature(d, np.zeros(8, dtype=np.float32)), 'clear',
            'image_feat.npy'),
        Row('object feature file', lambda d: feature(d, np.array([{'a': 1}] * 8, dtype=object)),
            'clear', 'image_feat.npy'),
        Row('NaN in features', lambda d: feature(d, np.full((8, 3), np.nan, np.float32)),
            'clear', 'NaN'),
        Row('more feature rows than items', lambda d: feature(d, np.zeros((12, 3), np.float32)),
            'clear', '12 rows'),
        Row('raw Amazon meta: bad gzip', gz, 'clear', 'meta_Toys.json.gz'),
        Row('--timeout 0', lambda d: ['prefer', SPEC, '--backend', 'openai', '--timeout', '0',
                                      '--out', d], 'clear', '--timeout'),
        Row('--max-new-tokens 0', lambda d: ['run', SPEC, '--max-new-tokens', '0', '--out', d],
            'clear', '--max-new-tokens'),
        Row('dead server', lambda d: ['prefer', SPEC, '--backend', 'openai', '--model', 'm',
                                      '--base-url', 'http://127.0.0.1:9/v1', '--out', d],
            'clear', 'no server at http://127.0.0.1:9/v1'),
        Row('missing --inter-file', lambda d: ['stats', tiny(os.path.join(d, 't')),
                                               '--inter-file', 'other.inter'],
            'clear', 'other.inter'),
        Row('report on a folder that is no run', lambda d: ['report', d], 'clear',
            'metrics.json'),
        Row('preferences from another split', lambda d: _other_split(d), 'clear',
            'was built on another split'),
        Row('duplicate pairs with conflicting labels', lambda d: inter(
            d, base + good + [good[0][:-1] + '2']), 'handled', 'conflicting split labels'),
        Row('items without text', lambda d: ['train', _no_text(d), '--model', 'mllmrec',
                                             '--epochs', '1', '--no-progress', '--set',
                                             'model.hidden_channels=8', '--out',
                                             os.path.join(d, 'o')],
            'handled', 'items have no text'),
    ]


def _other_split(d: str) -> List[str]:
    path = os.path.join(d, 'p.tsv')
    with open(path, 'w') as f:
        f.write('user\tpreference\tpreference_source\tsplit_fingerprint\n'
                '0\tlikes mugs\ttrain\tsplit=mmrec;seed=9;train=0000000000000000\n')
    return ['train', SPEC, '--model', 'mllmrec', '--preferences', path, '--out',
            os.path.join(d, 'o')]


def _no_text(d: str) -> str:
    root = tiny(os.path.join(d, 'tiny'))
    with open(os.path.join(root, 'tiny.items.tsv'), 'w') as f:
        f.write('itemID\ttitle\n' + ''.join(f'{i}\t{"mug" if i < 5 else ""}\n'
                                            for i in range(8)))
    return root


def classify(row: Row, work: str) -> Dict[str, str]:
    argv = row.setup(work)
    env = dict(os.environ, MLLMREC_HOME=os.path.join(work, 'home'), OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-m', 'mllmrec_pyg', *argv], env=env,
                          capture_output=True, text=True, timeout=600)
    err, both = done.stderr, done.stdout + done.stderr
    if MARKER and os.path.exists(MARKER):
        kind = 'security'
    elif 'Traceback (most recent call last)' in err:
        kind = 'traceback'
    elif row.expect == 'clear':
        errors = [line for line in err.splitlines() if ': error: ' in line]
        ok = done.returncode in (1, 2) and len(errors) == 1 and row.needle in errors[0]
        kind = 'clear' if ok else ('silent' if done.returncode == 0 else 'unclear')
    else:
        ok = done.returncode == 0 and row.needle in both and (
            row.check is None or row.check(work))
        kind = 'handled' if ok else 'silent'
    last = (err.strip().splitlines() or [''])[-1]
    return {'row': row.name, 'exit': str(done.returncode), 'kind': kind, 'said': last[:150]}


def main() -> None:
    global MARKER
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--keep', default=None, help='keep the work folders here')
    args = parser.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix='faults-')
    MARKER = os.path.join(root, 'EXECUTED')
    results = []
    for i, row in enumerate(rows()):
        work = os.path.join(root, f'row{i:02d}')
        os.makedirs(work, exist_ok=True)
        result = classify(row, work)
        results.append(result)
        print(f"{result['kind']:>9}  exit {result['exit']}  {row.name}: {result['said']}",
              flush=True)
    counts = {k: sum(r['kind'] == k for r in results)
              for k in ('clear', 'handled', 'traceback', 'silent', 'unclear', 'security')}
    print(' / '.join(f'{v} {k}' for k, v in counts.items()) + f' ({len(results)} rows)')


if __name__ == '__main__':
    main()
