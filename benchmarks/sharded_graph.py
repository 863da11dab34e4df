r"""The refined item graph (:class:`mllmrec_pyg.transforms.RefineItemGraph`)
built on one process and sharded over :obj:`P` processes (the transforms'
:obj:`group` argument): wall time per stage, per-rank peak RSS, whether the
sharded graph equals the one-process graph bitwise, and the recall@10 of
the :obj:`"ivf"` k-NN graph against the exact one.

Inputs: :obj:`N x d` clustered random features (within-cluster cosine about
0.6, like sentence embeddings), :obj:`2N` users and about :obj:`8N`
training interactions, generated identically by every rank (the features
are replicated, as the sharded build assumes).  Each configuration runs in
freshly spawned processes (:func:`torch.multiprocessing.spawn`, gloo on CPU
or NCCL with rank :obj:`r` on :obj:`cuda:r`); every rank resets its
high-water mark after making its inputs (``/proc/self/clear_refs``), and
reports ``VmHWM`` from ``/proc/self/status`` after the build (the peak RSS
of the build, inputs included; ``ru_maxrss`` would count the parent's too).
Stage times are the slowest rank's (each stage ends at a barrier); the
"knn CPU s/rank" column is each rank's process CPU time in the k-NN stage,
which shows how the work splits even where the cores are shared with other
jobs (wall times then are not).

Example::

    python benchmarks/sharded_graph.py --items 20000 --dim 64 --procs 2
    python benchmarks/sharded_graph.py --items 1000000 --dim 384 --procs 8 \
        --backend ivf --device cuda --dist-backend nccl

Extrapolation (a paper estimate, printed at the end).  The k-NN search
dominates and its work, in multiply-adds, is

.. math::
    W_\text{torch}(N) = N^2 d, \qquad
    W_\text{ivf}(N) = N d \left( N \frac{\text{nprobe}}{\text{nlist}} +
    \text{nlist} \right) + 640\, \text{nlist}^2 d

(exact: every pair; ivf: each query against the members of the
:obj:`nprobe` clusters its cluster probes, out of :obj:`nlist`, plus the
assignment of every item to a centroid and 10 k-means iterations on
:math:`64\,\text{nlist}` sample points; with the defaults
:math:`\text{nlist} = 4\sqrt{N}` and :math:`\text{nprobe} =
\max(32, \text{nlist}/64)`, :math:`N\,\text{nprobe}/\text{nlist} = N/64`
above 262k items, so ivf is still quadratic, 64 times cheaper).  The run
measures the per-rank throughput of the sharded search,
:math:`F = W(N) / (P \cdot T_P)` multiply-adds per second and rank
(:math:`T_P` the wall time of the k-NN stage on :math:`P` ranks; the
top-:math:`k` selection and merging are part of it), and predicts

.. math::
    T(N', P') \approx \frac{W(N')}{P' F} + \frac{20\, N' k}{B}

for :math:`N'` items on :math:`P'` ranks, the second term being the
all-gather of the edges (row and column int64, similarity float32: 20
bytes per edge, every rank receiving all :math:`N'k` of them) over a link
of :math:`B` bytes per second (default 100 GB/s, NVLink-class).  :math:`F`
measured here on CPU says nothing about a GPU: measure it with ``--device
cuda`` on the target GPU at an :obj:`N` whose blocks are full-sized (a few
hundred thousand items) and pass it with ``--throughput``.  Memory per rank
is the replicated features (:math:`4 N d` bytes: 15 GB at 10M x 384, 154
GB at 100M x 384, more than one H200 holds, so 100M needs float16 or
bfloat16 features, or features sharded with the candidates streamed
between ranks, which this build does not do) plus the gathered graph and
its normalised copy (about :math:`3 \times 20 N k` bytes) plus the search
blocks.  Jaccard (sparse, on CPU) and the normalisation are
:math:`O(E + Nk)` and not extrapolated.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.multiprocessing as mp

K = 10
TIMEOUT_S = 3600


def features(num_items: int, dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(1, num_items // 50), dim, generator=gen)
    assign = torch.randint(centres.size(0), (num_items, ), generator=gen)
    return centres[assign] + 0.8 * torch.randn(num_items, dim, generator=gen)


def interactions(num_items: int, num_users: int, seed: int = 0):
    # Users draw mostly from a home block of 50 items, plus popular items.
    from torch_geometric.data import HeteroData

    gen = torch.Generator().manual_seed(seed + 1)
    num_edges = 8 * num_items
    user = torch.randint(num_users, (num_edges, ), generator=gen)
    home = torch.randint(max(1, num_items // 50), (num_users, ),
                         generator=gen)[user] * 50
    local = (home + torch.randint(50, (num_edges, ), generator=gen)).clamp_max(
        num_items - 1)
    popular = (num_items * torch.rand(num_edges, generator=gen) ** 3).long()
    item = torch.where(torch.rand(num_edges, generator=gen) < 0.8, local,
                       popular)
    data = HeteroData()
    data['user'].num_nodes = num_users
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.stack([user, item])
    store.train_mask = torch.ones(num_edges, dtype=torch.bool)
    return data


def _status(field: str) -> int:
    # In kB, as /proc reports it.
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return -1


def _reset_peak() -> None:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def _worker(rank: int, procs: int, args: Dict[str, Any], out_dir: str) -> None:
    import torch.distributed as dist

    from mllmrec_pyg.transforms import RefineItemGraph

    torch.set_num_threads(args['threads'])
    device = torch.device('cpu')
    group = None
    if procs > 1:
        if args['dist_backend'] == 'nccl':
            torch.cuda.set_device(rank)
        dist.init_process_group(
            args['dist_backend'], init_method=f"file://{out_dir}/init",
            rank=rank, world_size=procs,
            timeout=__import__('datetime').timedelta(seconds=TIMEOUT_S))
        group = dist.group.WORLD
    if args['device'] == 'cuda':
        device = torch.device('cuda', rank)

    def barrier() -> None:
        if group is not None:
            dist.barrier(group)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    report: Dict[str, Any] = {}
    for backend in args['backends']:
        data = interactions(args['items'], 2 * args['items'])
        data['item'].x = features(args['items'], args['dim']).to(device)
        refine = RefineItemGraph(knn_k=K, alpha=None, jaccard_k=K,
                                 backend=backend, group=group)
        base_kb = _status('VmRSS')
        _reset_peak()
        barrier()
        times, cpu = {}, {}
        start = time.perf_counter()
        for name, stage in (('knn', refine.knn),
                            ('jaccard', refine.cooccurrence),
                            ('normalize', refine.normalize)):
            t0, c0 = time.perf_counter(), time.process_time()
            data = stage(data)
            cpu[name] = time.process_time() - c0
            barrier()
            times[name] = time.perf_counter() - t0
        times['total'] = time.perf_counter() - start
        report[backend] = dict(times=times, cpu=cpu, inputs_mib=base_kb / 1024,
                               peak_mib=_status('VmHWM') / 1024)
        if rank == 0:
            torch.save({rel: (data[rel].edge_index.cpu(),
                              data[rel].edge_weight.cpu())
                        for rel in data.edge_types if rel[0] == 'item'},
                       f'{out_dir}/graph_{backend}.pt')
    with open(f'{out_dir}/rank{rank}.json', 'w') as f:
        json.dump(report, f)
    if group is not None:
        dist.destroy_process_group()


def run(procs: int, args: Dict[str, Any]) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        mp.spawn(_worker, args=(procs, args, out_dir), nprocs=procs,
                 join=True)
        wall = time.perf_counter() - start
        ranks = [json.loads(Path(f'{out_dir}/rank{r}.json').read_text())
                 for r in range(procs)]
        graphs = {b: torch.load(f'{out_dir}/graph_{b}.pt')
                  for b in args['backends']}
    return dict(ranks=ranks, graphs=graphs, wall=wall)


def work(backend: str, n: float, d: float) -> float:
    r"""Multiply-adds of the k-NN search (see the module docstring)."""
    if backend == 'torch':
        return n * n * d
    nlist = max(1.0, min(n, round(4 * math.sqrt(n))))
    nprobe = min(nlist, max(32.0, nlist // 64))
    return n * d * (n * nprobe / nlist + nlist) + 640 * nlist ** 2 * d


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--items', type=int, default=20000)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--procs', type=int, default=2)
    parser.add_argument('--backend', choices=('torch', 'ivf', 'both'),
                        default='both', help='k-NN search backend')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--dist-backend', choices=('gloo', 'nccl'),
                        default='gloo')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per rank')
    parser.add_argument('--recall-sample', type=int, default=1000)
    parser.add_argument('--target-items', type=float, nargs='+',
                        default=[1e7, 1e8])
    parser.add_argument('--target-dim', type=int, default=384)
    parser.add_argument('--target-procs', type=int, default=8)
    parser.add_argument('--throughput', type=float, default=None,
                        help='per-rank multiply-adds/s to extrapolate with, '
                             'instead of the measured one')
    parser.add_argument('--bandwidth', type=float, default=100e9,
                        help='all-gather bytes/s per rank')
    parser.add_argument('--json', type=Path, default=None)
    opts = parser.parse_args(argv)
    backends = ['torch', 'ivf'] if opts.backend == 'both' else [opts.backend]
    args = dict(items=opts.items, dim=opts.dim, backends=backends,
                device=opts.device, dist_backend=opts.dist_backend,
                threads=opts.threads)

    results = {procs: run(procs, args) for procs in sorted({1, opts.procs})}
    summary: Dict[str, Any] = dict(items=opts.items, dim=opts.dim,
                                   procs=opts.procs, backends={})
    print(f'N={opts.items} d={opts.dim} k={K}, {opts.threads} thread(s) per '
          f'rank, {opts.device}/{opts.dist_backend}')
    print(f"{'backend':8} {'P':>2} {'knn s':>8} {'jaccard s':>9} "
          f"{'norm s':>7} {'total s':>8} {'knn CPU s/rank':>16} "
          f"{'peak MiB/rank':>14} "
          f"{'inputs MiB':>10} {'equal':>6}")
    for backend in backends:
        one = results[1]['graphs'][backend]
        entry: Dict[str, Any] = {}
        for procs, result in results.items():
            times = [r[backend]['times'] for r in result['ranks']]
            # A stage ends at a barrier: the slowest rank's time is the wall.
            worst = {s: max(t[s] for t in times) for s in times[0]}
            peaks = [round(r[backend]['peak_mib']) for r in result['ranks']]
            knn_cpu = [round(r[backend]['cpu']['knn'], 2)
                       for r in result['ranks']]
            inputs = max(r[backend]['inputs_mib'] for r in result['ranks'])
            graph = result['graphs'][backend]
            equal = all(torch.equal(graph[rel][i], one[rel][i])
                        for rel in one for i in range(2)) and \
                graph.keys() == one.keys()
            entry[procs] = dict(times=worst, knn_cpu=knn_cpu, peak_mib=peaks,
                                inputs_mib=inputs, equal=equal)
            print(f"{backend:8} {procs:>2} {worst['knn']:8.2f} "
                  f"{worst['jaccard']:9.2f} {worst['normalize']:7.2f} "
                  f"{worst['total']:8.2f} {str(knn_cpu):>16} "
                  f"{str(peaks):>14} {inputs:10.0f} "
                  f"{str(equal):>6}")
        summary['backends'][backend] = entry

    if 'ivf' in backends:
        from mllmrec_pyg.transforms import knn_recall

        x = features(opts.items, opts.dim)
        row, col = results[opts.procs]['graphs']['ivf'][
            ('item', 'knn', 'item')][0]
        gen = torch.Generator().manual_seed(0)
        sample = torch.randperm(opts.items, generator=gen)[:opts.recall_sample]
        recall = knn_recall(x, col, row, K, sample)
        summary['ivf_recall_at_10'] = recall
        print(f'ivf recall@{K} against exact ({sample.numel()} queries): '
              f'{recall:.4f}')

    print(f'\nExtrapolation to {opts.target_procs} ranks, d='
          f'{opts.target_dim}: T = W(N) / (P F) + 20 N k / B, B = '
          f'{opts.bandwidth:.3g} B/s')
    summary['extrapolation'] = {}
    for backend in backends:
        measured = summary['backends'][backend][opts.procs]
        f_rank = work(backend, opts.items, opts.dim) / (
            opts.procs * measured['times']['knn'])
        f_use = opts.throughput or f_rank
        f_cpu = work(backend, opts.items, opts.dim) / sum(
            measured['knn_cpu'])
        print(f'  {backend}: measured F = {f_rank:.3g} multiply-adds/s per '
              f'rank on {opts.procs} rank(s) (wall; {f_cpu:.3g} per CPU '
              f'second of the ranks)' +
              (f', using F = {f_use:.3g}' if opts.throughput else ''))
        for n in opts.target_items:
            w = work(backend, n, opts.target_dim)
            t = w / (opts.target_procs * f_use) + 20 * n * K / opts.bandwidth
            feat_gb = 4 * n * opts.target_dim / 1e9
            graph_gb = 3 * 20 * n * K / 1e9
            summary['extrapolation'][f'{backend}/{n:.0f}'] = dict(
                work=w, seconds=t, features_gb=feat_gb, graph_gb=graph_gb)
            print(f'    N={n:.3g}: W={w:.3g}, T~{t:.3g} s '
                  f'({t / 3600:.3g} h), features {feat_gb:.3g} GB + graph '
                  f'~{graph_gb:.3g} GB per rank')
    if opts.json is not None:
        opts.json.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
