r"""Time and peak memory of SOIL's graph construction: everything
:class:`mllmrec_pyg.nn.models.SOIL` builds in its constructor before
training, the similarity k-NN item graph
(:func:`~mllmrec_pyg.nn.models.soil.similarity_knn_graph`), the
interest-aware item graph
(:func:`~mllmrec_pyg.nn.models.soil.interest_item_graph`), the second-order
user-item edges (:func:`~mllmrec_pyg.nn.models.soil.second_order_edges`),
each on its own, and the whole constructor (``init``: the three, the
adjacencies and the parameters).

Every (scale, part) runs in a fresh subprocess so that its peak is its own:
the worker loads its inputs, resets the kernel's high-water mark
(``/proc/self/clear_refs``), builds, and reports the wall and CPU time and
``VmHWM`` of ``/proc/self/status`` (inputs included, so the "inputs" column
is the floor; ``resource.getrusage().ru_maxrss`` is not used: a child keeps
its parent's peak across fork and exec).  For comparison, the last columns
give what one dense float32 ``[N, N]`` similarity and one dense
``[users, N]`` score matrix (the official code's) would take.

Scales:

* ``sports``: real Amazon Sports (``../shared/data/amazon-sports``, if it
  exists) loaded with :func:`mllmrec_pyg.data.load_dataset`, its TRAINING
  interactions, and the MiniLM embeddings of the item text that
  ``mllmrec train --model soil`` uses
  (:func:`mllmrec_pyg.pipeline.encode_items`, as
  :func:`mllmrec_pyg.experiment.runner.prepare_features` calls it; encoded
  once, cached in ``MLLMREC_HOME``).
* ``synthetic``: ``--items`` items (default 100,000) with clustered random
  ``--dim``-d features (50 consecutive items per cluster), ``--users`` users
  (default 50,000) with 5 to 15 interactions each (mean ~10), drawn mostly
  from one home cluster, from a seeded generator.

Example::

    python benchmarks/soil_graph.py --quick
    python benchmarks/soil_graph.py --scales sports --threads 2
    python benchmarks/soil_graph.py --scales synthetic --items 100000 \
        --users 50000 --parts init
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
SCALES = ('sports', 'synthetic')
PARTS = ('knn', 'interest', 'second', 'init')


def synthetic_inputs(num_items: int, num_users: int, dim: int,
                     num_modalities: int,
                     seed: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    r"""Clustered features (within-cluster cosine ~0.6, like sentence
    embeddings) and user histories drawn mostly from one cluster."""
    rng = np.random.default_rng(seed)
    cluster = 50
    num_clusters = max(1, num_items // cluster)
    assign = np.minimum(np.arange(num_items) // cluster, num_clusters - 1)
    features = {}
    for m in range(num_modalities):
        centers = rng.standard_normal((num_clusters, dim), dtype=np.float32)
        x = centers[assign]
        x += 0.8 * rng.standard_normal((num_items, dim), dtype=np.float32)
        features['x' if m == 0 else f'x{m}'] = x
    per_user = rng.integers(5, 16, num_users)
    user = np.repeat(np.arange(num_users), per_user)
    home = rng.integers(0, num_clusters, num_users)[user] * cluster
    local = np.minimum(home + rng.integers(0, cluster, user.size),
                       num_items - 1)
    popular = (num_items * rng.random(user.size) ** 3).astype(np.int64)
    item = np.where(rng.random(user.size) < 0.8, local, popular)
    return features, np.unique(np.stack([user, item]), axis=1)


def sports_inputs() -> Tuple[Dict[str, np.ndarray], np.ndarray, int]:
    r"""Amazon Sports as ``mllmrec train --model soil`` sees it."""
    from mllmrec_pyg.data import load_dataset, train_edge_index
    from mllmrec_pyg.pipeline import encode_items

    data = load_dataset(str(SHARED / 'amazon-sports'))
    start = time.perf_counter()
    x = encode_items(data)
    print(f'  sports: {x.size(0):,} items encoded (or read from the cache) in '
          f'{time.perf_counter() - start:.0f} s', file=sys.stderr)
    edge_index = train_edge_index(data)
    return ({'x': x.float().numpy()}, edge_index.numpy(),
            int(data['user'].num_nodes))


def inputs_path(scale: str, args: argparse.Namespace) -> Path:
    cache = Path(args.cache)
    if scale == 'sports':
        return cache / 'soil_sports.npz'
    return cache / (f'soil_synthetic_{args.items}_{args.users}_{args.dim}_'
                    f'{args.modalities}.npz')


def prepare_inputs(scale: str, args: argparse.Namespace) -> Path:
    r"""Writes the inputs of :obj:`scale` once (an ``.npz`` the workers
    read) and returns its path."""
    path = inputs_path(scale, args)
    if path.exists():
        return path
    if scale == 'sports':
        features, edge_index, num_users = sports_inputs()
    else:
        features, edge_index = synthetic_inputs(args.items, args.users,
                                                args.dim, args.modalities,
                                                seed=0)
        num_users = args.users
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, edge_index=edge_index, users=num_users,
             names=np.array(list(features)),
             **{f'feat_{name}': x for name, x in features.items()})
    return path


def rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak-RSS high-water mark to the RSS
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from mllmrec_pyg.nn.models import SOIL
    from mllmrec_pyg.nn.models.soil import (
        interest_item_graph,
        second_order_edges,
        similarity_knn_graph,
    )

    f = np.load(args.worker_inputs)
    names = [str(n) for n in f['names']]
    features = {n: torch.from_numpy(f[f'feat_{n}']) for n in names}
    edge_index = torch.from_numpy(f['edge_index']).long()
    num_users = int(f['users'])
    feats = list(features.values())
    part = args.worker_part

    floor = rss_kib('VmRSS')
    reset = reset_peak()
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.no_grad():
        if part == 'knn':
            edges = sum(similarity_knn_graph(x, args.knn_k)[0].size(1)
                        for x in feats)
        elif part == 'interest':
            edges = sum(interest_item_graph(edge_index, x, num_users,
                                            args.knn_i)[0].size(1)
                        for x in feats)
        elif part == 'second':
            edges = second_order_edges(edge_index, feats, num_users,
                                       args.knn_a)[0].size(1)
    if part == 'init':
        model = SOIL(num_users, edge_index, features, knn_k=args.knn_k,
                     knn_i=args.knn_i, knn_a=args.knn_a)
        edges = model.ui_adj.size(1) + sum(
            getattr(model, f'item_adj_{m}').size(1) for m in range(len(feats)))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    print(json.dumps(dict(seconds=seconds, cpu_seconds=cpu_seconds,
                          floor_kib=floor, peak_kib=rss_kib('VmHWM'),
                          peak_reset=reset, edges=int(edges))))


def run_one(path: Path, part: str,
            args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    cmd = [sys.executable, __file__, '--worker-inputs', str(path),
           '--worker-part', part, '--threads', str(args.threads),
           '--knn-k', str(args.knn_k), '--knn-i', str(args.knn_i),
           '--knn-a', str(args.knn_a)]
    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f'  {part}: timed out after {args.timeout} s', file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f'  {part} failed:\n{proc.stderr[-2000:]}', file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scales_of(args: argparse.Namespace) -> List[str]:
    scales = list(args.scales)
    if 'sports' in scales and not (SHARED / 'amazon-sports').exists():
        print(f'{SHARED / "amazon-sports"} not found: skipping sports',
              file=sys.stderr)
        scales.remove('sports')
    return scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scales', nargs='+', default=list(SCALES),
                        choices=SCALES)
    parser.add_argument('--parts', nargs='+', default=list(PARTS),
                        choices=PARTS)
    parser.add_argument('--items', type=int, default=100_000,
                        help='items of the synthetic scale')
    parser.add_argument('--users', type=int, default=50_000,
                        help='users of the synthetic scale')
    parser.add_argument('--dim', type=int, default=384,
                        help='feature size of the synthetic scale')
    parser.add_argument('--modalities', type=int, default=1,
                        help='modalities of the synthetic scale')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--knn-k', type=int, default=10)
    parser.add_argument('--knn-i', type=int, default=10)
    parser.add_argument('--knn-a', type=int, default=2)
    parser.add_argument('--quick', action='store_true',
                        help='a small smoke run: synthetic, 2,000 items, '
                             '1,000 users, 64-d, two modalities')
    parser.add_argument('--cache', default=os.path.join(
        tempfile.gettempdir(), 'mllmrec_soil_graph'))
    parser.add_argument('--timeout', type=int, default=7200)
    parser.add_argument('--worker-inputs', help=argparse.SUPPRESS)
    parser.add_argument('--worker-part', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_inputs:
        worker(args)
        return
    if args.quick:
        args.scales, args.items, args.users = ['synthetic'], 2000, 1000
        args.dim, args.modalities = 64, 2

    print(f'{"scale":<10}{"items":>9}{"users":>9}{"train":>11}  {"part":<9}'
          f'{"time s":>8}{"CPU s":>8}{"inputs MiB":>11}{"peak MiB":>10}'
          f'{"build MiB":>10}{"edges":>12}{"dense NxN MiB":>15}'
          f'{"dense UxN MiB":>15}')
    for scale in scales_of(args):
        path = prepare_inputs(scale, args)
        f = np.load(path)
        num_users, num_edges = int(f['users']), f['edge_index'].shape[1]
        num_items = f[f'feat_{f["names"][0]}'].shape[0]
        dense_nn = 4 * num_items ** 2 / 2 ** 20
        dense_un = 4 * num_users * num_items / 2 ** 20
        for part in args.parts:
            r = run_one(path, part, args)
            if r is None:
                continue
            floor, peak = r['floor_kib'] / 1024, r['peak_kib'] / 1024
            note = '' if r['peak_reset'] else '  (peak includes the loading)'
            print(f'{scale:<10}{num_items:>9,}{num_users:>9,}{num_edges:>11,}'
                  f'  {part:<9}{r["seconds"]:>8.1f}{r["cpu_seconds"]:>8.1f}'
                  f'{floor:>11.0f}{peak:>10.0f}{peak - floor:>10.0f}'
                  f'{r["edges"]:>12,}{dense_nn:>15,.0f}{dense_un:>15,.0f}'
                  f'{note}', flush=True)


if __name__ == '__main__':
    main()
