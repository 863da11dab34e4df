r"""Plug-and-play: does MLLMRec's refined item graph improve FREEDOM and SOIL?

For each dataset and model the protocol is, with every selection on
VALIDATION Recall@20 and test read only at the selected points:

1. ``grid``: the vanilla model's grid (seed 2024) -> the selected point;
2. ``gr-grid``: at that point, the refined graph (``--item-graph refined``)
   over alpha x K_c, alpha at quantiles (0.25, 0.5, 0.75) of each feature
   type's own top-10 cosine similarities (``similarity_quantiles``); with
   several modalities both fusions, ``mix`` (refine each modality, then
   mix) and ``concat`` (refine the fused features), the fusion selected
   on validation too;
3. ``seeds``: vanilla and +GR at their selected points, 3 seeds; mean and
   standard deviation of test R@10/20, N@10/20, and a paired t-test per
   user (per-user test values averaged over the seeds) of +GR vs vanilla;
4. ``control``: +GR with the graph features replaced by random vectors
   (same shapes, same alpha quantile, same K_c): which part helps;
5. ``context``: LightGCN and MLLMRec (training-items stand-in), 3 seeds;
6. ``temporal``: vanilla vs +GR (FREEDOM) at the selected points, 3 seeds,
   under a temporal split (ML-100k: global by timestamp; Sports: per user,
   by ``sports.asin.inter``'s ``seq_pos``).

Every run is a run folder of :func:`mllmrec_pyg.experiment.run_experiment`
under ``--out`` (a finished run is read back, an interrupted one resumes
from its checkpoint) and one line of ``results.jsonl``; a rerun extends the
file, so the benchmark can span several sittings (``--max-hours`` stops
starting new runs after that long).  ``--table`` prints the Markdown table
of what is there.

    OMP_NUM_THREADS=1 python benchmarks/plug_and_play.py \
        --datasets ml-100k,tiktok --models freedom --max-hours 2
    python benchmarks/plug_and_play.py --table
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get('MLLMREC_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))

SEEDS = (2024, 2025, 2026)
QUANTILES = (0.25, 0.5, 0.75)
JACCARD_K = (5, 10, 15)
METRICS = ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20')
#: What makes a results row the run of a point: a finished row whose
#: values differ from the ones asked for is stale (:meth:`Bench.supersede`).
POINT_KEYS = ('params', 'fusion', 'quantile', 'alpha', 'jaccard_k', 'same_as')

#: Per dataset: folder, the graph features (the modalities), whether the
#: grid is cut to the compute budget, the temporal split to test.
DATASETS: Dict[str, Dict[str, Any]] = {
    'ml-100k': {'folder': 'ml-100k', 'keys': ['x'], 'small': True,
                'temporal': {'split': 'global_temporal'},
                'features': 'all-MiniLM-L6-v2 of title + release year + genres (384-d)'},
    'tiktok': {'folder': 'tiktok', 'keys': ['image_feat', 'audio_feat'], 'small': True,
               'temporal': None,
               'features': "the dataset's image_feat + audio_feat (128-d each)"},
    'sports': {'folder': 'amazon-sports', 'keys': ['x'], 'small': False,
               'temporal': {'split': 'user_temporal', 'inter_file': 'sports.asin.inter'},
               'features': 'all-MiniLM-L6-v2 of idgenrec_text (384-d); no image features'},
}

#: The alpha quantiles tried on Sports: a FREEDOM run there took 41-54 min
#: on one thread (143-185 epochs), so two, the ones validation chose on the
#: other MiniLM dataset (ML-100k: 0.5 for FREEDOM, 0.75 for SOIL).
SPORTS_QUANTILES: Tuple[float, ...] = (0.5, 0.75)

#: K_c tried on Sports at the best alpha besides 10: none, to fit the
#: budget (on ML-100k K_c moved validation R@20 by at most 0.0024 at 2 of
#: its 3 alphas).
SPORTS_EXTRA_JACCARD_K: Tuple[int, ...] = ()

#: SOIL's early-stopping patience: the official code's 10 epochs.
SOIL_PATIENCE = 10

#: The vanilla grids: full on the small datasets, at most 4 points on Sports
#: (and for SOIL everywhere: its epochs are the slowest).
GRIDS: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
    'freedom': {
        'full': [{'dropout': d, 'reg_weight': r} for d in (0.8, 0.9) for r in (0.0, 1e-4, 1e-3)],
        # Sports: reg_weight 0 only. On the full ML-100k and TikTok grids it
        # moved validation R@20 by at most 0.0019 and 0 was selected on both;
        # one Sports run took 41-54 min on one thread (2026-12-02).
        'cut': [{'dropout': d, 'reg_weight': 0.0} for d in (0.8, 0.9)],
    },
    'soil': {
        'full': [{'view_cl_weight': a, 'user_item_cl_weight': b}
                 for a in (0.001, 0.01, 0.1) for b in (0.001, 0.01, 0.1)],
        'cut': [{'view_cl_weight': a, 'user_item_cl_weight': b}
                for a, b in ((0.1, 0.01), (0.01, 0.01), (0.1, 0.1), (0.01, 0.1))],
    },
}


def log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


class Bench:
    r"""The results file and the run folders under :obj:`out`."""

    def __init__(self, out: str, deadline: float, threads: int,
                 max_runs: Optional[int] = None) -> None:
        self.out = out
        self.max_runs = max_runs
        self.started = 0
        self.deadline = deadline
        self.threads = threads
        os.makedirs(out, exist_ok=True)
        self.results_path = os.path.join(out, 'results.jsonl')
        self.results: Dict[str, Dict[str, Any]] = {}
        self.reload()
        self._data: Dict[Tuple[str, str], Any] = {}
        self._quantiles: Dict[Tuple[str, str, str], List[float]] = {}
        self.stopped = False
        self.busy = False  # some run was skipped: another process held it

    # ------------------------------------------------------------ data --
    def data(self, dataset: str, split: str = 'default') -> Any:
        r"""The dataset (loaded once per split) with the features every
        model reads already on it (MiniLM ``x`` for text datasets)."""
        from mllmrec_pyg.experiment import build_config
        from mllmrec_pyg.experiment.runner import load_experiment_data, prepare_features

        key = (dataset, split)
        if key not in self._data:
            spec = DATASETS[dataset]
            layer: Dict[str, Any] = {}
            if split != 'default':
                layer['dataset'] = dict(spec['temporal'])
            config = build_config(os.path.join(DATA, spec['folder']), config=layer or None,
                                  model='freedom')
            data = load_experiment_data(config)
            if 'x' in spec['keys']:
                prepare_features(data, config)
            self._data[key] = data
        return self._data[key]

    def quantile_alphas(self, dataset: str, key: str, data: Any) -> List[float]:
        r"""alpha at :data:`QUANTILES` of the top-10 similarities of the
        feature :obj:`key` (a feature attribute or ``concat``)."""
        from mllmrec_pyg.transforms import FuseFeatures, similarity_quantiles

        memo = (dataset, key, str(id(data)))
        if memo not in self._quantiles:
            if key == 'concat':
                keys = [k for k in DATASETS[dataset]['keys']]
                fused = FuseFeatures(keys, out_key='_q')(copy.copy(data))['item']._q
                x = fused
            else:
                x = getattr(data['item'], key)
            self._quantiles[memo] = [round(a, 4) for a in similarity_quantiles(x, 10, QUANTILES)]
        return self._quantiles[memo]

    # ------------------------------------------------------------ runs --
    def run(self, run_id: str, dataset: str, model: str, layer: Dict[str, Any],
            info: Dict[str, Any], split: str = 'default',
            data_hook: Optional[Callable[[Any], Any]] = None) -> Optional[Dict[str, Any]]:
        r"""Runs (or reads back) one experiment; returns its results row, or
        :obj:`None` when the time budget is spent or another process
        sharing :obj:`out` is running it."""
        from mllmrec_pyg.experiment import build_config

        self.reload()  # another process may have finished it meanwhile
        if run_id in self.results:
            if not self._stale(run_id, info):
                return self.results[run_id]
            self.supersede(run_id, info)
        if time.time() > self.deadline:
            if not self.stopped:
                log('time budget spent: no new runs (rerun to continue)')
            self.stopped = True
            return None
        if self.max_runs is not None and self.started >= self.max_runs:
            self.stopped = True
            return None
        spec = DATASETS[dataset]
        base = self.data(dataset, split)
        data = copy.copy(base)
        if data_hook is not None:
            data = data_hook(data)
        if split != 'default':
            layer = {**layer, 'dataset': {**layer.get('dataset', {}), **spec['temporal']}}
        config = build_config(os.path.join(DATA, spec['folder']), config=layer, model=model)
        run_dir = os.path.join(self.out, 'runs', run_id)
        lock = _acquire(run_dir)
        if lock is None:
            log(f'run {run_id}: running in another process: skipped (rerun to continue)')
            self.busy = True
            return None
        self.started += 1
        try:
            return self._run(run_id, dataset, model, data, config, info, split, run_dir)
        finally:
            os.unlink(lock)

    def _run(self, run_id: str, dataset: str, model: str, data: Any, config: Any,
             info: Dict[str, Any], split: str, run_dir: str) -> Dict[str, Any]:
        from mllmrec_pyg.experiment import run_experiment

        resume = os.path.exists(os.path.join(run_dir, 'checkpoint.pt')) and not os.path.exists(
            os.path.join(run_dir, 'metrics.json'))
        log(f'run {run_id}' + (' (resuming)' if resume else ''))
        started = time.perf_counter()
        result = run_experiment(data, config, run_dir, resume=resume, progress=False)
        row = {
            'run': run_id, 'dataset': dataset, 'model': model, 'split': split,
            **info, 'seed': config.seed, 'best_epoch': result.best_epoch,
            'epochs': int(result.metrics.get('epochs_trained', 0)),
            'timing': result.metrics.get('timing'),
            'time_s': round(time.perf_counter() - started, 1), 'threads': self.threads,
            'val': {m: result.metrics['val'][m] for m in METRICS},
            'test': {m: result.metrics['test'][m] for m in METRICS},
            'run_dir': os.path.relpath(run_dir, self.out),
        }
        _keep_per_user(self.out, run_dir, run_id)
        self._append(row)
        log(f"  val R@20 {row['val']['recall@20']:.4f} test R@20 {row['test']['recall@20']:.4f} "
            f"best epoch {row['best_epoch']} ({row['time_s']:.0f} s)")
        return row

    def alias(self, run_id: str, row: Optional[Dict[str, Any]],
              **updates: Any) -> Optional[Dict[str, Any]]:
        r"""Records the finished run :obj:`row` again as :obj:`run_id` (e.g.
        the selected grid point as the first seed of its row), without
        training again."""
        if row is None:
            return None
        self.reload()
        if run_id in self.results and self._stale(run_id, {'same_as': row['run']}):
            self.supersede(run_id, {'same_as': row['run']})
        if run_id not in self.results:
            self._append({**row, **updates, 'run': run_id, 'same_as': row['run']})
        return self.results[run_id]

    def _stale(self, run_id: str, info: Dict[str, Any]) -> bool:
        r"""Whether the finished row of :obj:`run_id` was run at another
        point (:data:`POINT_KEYS`) than :obj:`info` asks for: run ids name
        a role (e.g. ``+GR/s2026``), not a point, and a selection can move
        when grid cells are added."""
        row = self.results[run_id]
        return any(row.get(k) != info.get(k) for k in POINT_KEYS if k in info)

    def supersede(self, run_id: str, info: Dict[str, Any]) -> None:
        r"""Moves the stale row of :obj:`run_id` (and its per-user file and
        run folder) aside, to ``results_superseded.jsonl`` and
        ``.superseded`` names: never deleted, never read by the table.
        When another process sharing :obj:`out` has already done so (the
        row is no longer in the file), nothing is moved: the run folder
        may then be its rerun, in progress."""
        import fcntl
        row = self.results.pop(run_id)
        want = {k: info.get(k) for k in POINT_KEYS if k in info}
        have = {k: row.get(k) for k in want}
        stamp = time.strftime('%Y%m%dT%H%M%S')
        keep: List[str] = []
        moved: List[Dict[str, Any]] = []
        with open(self.results_path, 'r+') as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            for line in f:
                old = json.loads(line) if line.strip() else None
                if old is not None and old['run'] == run_id:
                    moved.append(old)
                else:
                    keep.append(line)
            if moved:
                with open(os.path.join(self.out, 'results_superseded.jsonl'), 'a') as g:
                    for old in moved:
                        g.write(json.dumps({**old, 'superseded': stamp,
                                            'superseded_by': want}) + '\n')
                f.seek(0)
                f.writelines(keep)
                f.truncate()
        if not moved:
            log(f'run {run_id}: already superseded by another process')
            return
        log(f'run {run_id}: its row was run at {have}, the selection is now {want}: '
            'superseded (kept in results_superseded.jsonl), rerun')
        per_user = _per_user_path(self.out, run_id)
        run_dir = os.path.join(self.out, 'runs', run_id)
        for path, aside in ((per_user, f'{per_user[:-4]}.superseded-{stamp}.npz'),
                            (run_dir, f'{run_dir}.superseded-{stamp}')):
            if os.path.exists(path):
                os.replace(path, aside)

    def reload(self) -> None:
        r"""(Re)reads the results file, with the rows other processes
        sharing :obj:`out` appended since (a later row of a run wins)."""
        if os.path.exists(self.results_path):
            with open(self.results_path) as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        self.results[row['run']] = row

    def _append(self, row: Dict[str, Any]) -> None:
        import fcntl
        with open(self.results_path, 'a') as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # one whole line per writer
            f.write(json.dumps(row) + '\n')
        self.results[row['run']] = row


def _acquire(run_dir: str) -> Optional[str]:
    r"""Takes the run folder's lock file (``.lock``, holding the pid), so
    two processes sharing :obj:`--out` never train the same run; a lock
    left by a dead process is taken over.  Returns its path, or
    :obj:`None` when a live process holds it."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, '.lock')
    # The pid is written first and the lock appears by os.link (atomic, fails
    # if it exists), so a lock file is never seen empty.
    mine = f'{path}.{os.getpid()}'
    with open(mine, 'w') as f:
        f.write(str(os.getpid()))
    try:
        for _ in range(2):
            try:
                os.link(mine, path)
                return path
            except FileExistsError:
                try:
                    with open(path) as f:
                        os.kill(int(f.read()), 0)
                    return None  # held by a live process
                except PermissionError:
                    return None  # alive, another user's
                except (ValueError, ProcessLookupError, FileNotFoundError):
                    try:
                        os.unlink(path)  # stale: its process is gone
                    except FileNotFoundError:
                        pass
        return None
    finally:
        os.unlink(mine)


def _tag(params: Dict[str, Any]) -> str:
    return ','.join(f'{k}={v}' for k, v in sorted(params.items()))


def _best(rows: Sequence[Optional[Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
    r"""The row of highest validation Recall@20 (first on ties); None if
    any run is missing (the selection waits for the whole grid)."""
    if not rows or any(r is None for r in rows):
        return None
    return max(rows, key=lambda r: r['val']['recall@20'])  # type: ignore[index]


def gr_layer(keys: List[str], fusion: str, alphas: List[float], jaccard_k: int) -> Dict[str, Any]:
    graph: Dict[str, Any] = {'key': keys if len(keys) > 1 else keys[0],
                             'alpha': alphas if (len(keys) > 1 and fusion == 'mix') else alphas[0],
                             'jaccard_k': jaccard_k, 'knn_k': 10}
    if len(keys) > 1:
        graph['fusion'] = fusion
    return {'graph': graph}


def random_features(keys: List[str], seed: int = 7) -> Callable[[Any], Any]:
    r"""A data hook putting random normal vectors of the same shapes in
    place of the graph features (as ``rand_<key>``)."""
    import torch

    def hook(data: Any) -> Any:
        gen = torch.Generator().manual_seed(seed)
        for k in keys:
            x = getattr(data['item'], k)
            setattr(data['item'], f'rand_{k}', torch.randn(x.shape, generator=gen))
        return data
    return hook


def model_layer(model: str, params: Dict[str, Any], seed: int,
                extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    own = dict(params)
    train: Dict[str, Any] = {'seed': seed}
    if model == 'freedom':
        own['seed'] = seed  # the pruning generator follows the run's seed
    if model == 'soil':
        train['patience'] = SOIL_PATIENCE
    return {'model': {model: {**own, **(extra or {})}}, 'train': train}


def benchmark_model(bench: Bench, dataset: str, model: str, phases: Sequence[str]) -> None:
    spec = DATASETS[dataset]
    keys = spec['keys']
    # SOIL's four InfoNCE terms over [2048, 2048] logits cost ~0.4-1 s per
    # batch here (ML-100k: ~15-20 s per epoch, 2 cores shared): its grids
    # are the cut ones everywhere (see the README's budget note).
    small = spec['small'] and model != 'soil'
    grid = GRIDS[model]['full' if small else 'cut']
    name = f'{dataset}/{model}'

    # 1. vanilla grid
    rows = [bench.run(f'{name}/grid/{_tag(p)}', dataset, model, model_layer(model, p, SEEDS[0]),
                      {'variant': 'vanilla', 'phase': 'grid', 'params': p}) for p in grid]
    best = _best(rows)
    if best is None:
        return
    params = best['params']
    log(f'{name}: vanilla selected {params} (val R@20 {best["val"]["recall@20"]:.4f})')

    # 2. +GR grid at the vanilla point
    data = bench.data(dataset)
    fusions = ['mix', 'concat'] if len(keys) > 1 else ['mix']
    gr_rows: List[Optional[Dict[str, Any]]] = []
    for fusion in fusions:
        per_key = ([bench.quantile_alphas(dataset, k, data) for k in keys] if fusion == 'mix'
                   else [bench.quantile_alphas(dataset, 'concat', data)])
        levels = range(len(QUANTILES))
        extra_k: Tuple[int, ...] = ()
        if small:
            points = [(q, kc) for q in levels for kc in JACCARD_K]
        elif spec['small']:  # SOIL's cut grid: the alphas at the paper's
            # Sports K_c (10), then the other K_c at the best alpha
            points = [(q, 10) for q in levels]
            extra_k = tuple(kc for kc in JACCARD_K if kc != 10)
        else:  # Sports: SPORTS_QUANTILES at K_c 10, then
            # SPORTS_EXTRA_JACCARD_K at the best alpha
            points = [(QUANTILES.index(q), 10) for q in SPORTS_QUANTILES]
            extra_k = SPORTS_EXTRA_JACCARD_K
        def gr_run(q: int, kc: int, fusion: str = fusion,
                   per_key: List[List[float]] = per_key) -> Optional[Dict[str, Any]]:
            alphas = [a[q] for a in per_key]
            return bench.run(
                f'{name}/gr-grid/{fusion}/q={QUANTILES[q]},kc={kc}', dataset, model,
                {**model_layer(model, params, SEEDS[0], {'item_graph': 'data'}),
                 **gr_layer(keys, fusion, alphas, kc)},
                {'variant': '+GR', 'phase': 'gr-grid', 'params': params, 'fusion': fusion,
                 'quantile': QUANTILES[q], 'alpha': alphas, 'jaccard_k': kc})

        gr_rows += [gr_run(q, kc) for q, kc in points]
        if extra_k:
            first = _best(gr_rows[-len(points):])
            if first is None:
                return
            q = QUANTILES.index(first['quantile'])
            gr_rows += [gr_run(q, kc) for kc in extra_k]
    gr_best = _best(gr_rows)
    if gr_best is None:
        return
    log(f"{name}: +GR selected fusion={gr_best['fusion']} q={gr_best['quantile']} "
        f"alpha={gr_best['alpha']} K_c={gr_best['jaccard_k']} "
        f"(val R@20 {gr_best['val']['recall@20']:.4f})")
    gr_point = {k: gr_best[k] for k in ('fusion', 'quantile', 'alpha', 'jaccard_k')}

    def vanilla(seed: int, split: str = 'default') -> Optional[Dict[str, Any]]:
        run_id = f'{name}/seeds-{split}/vanilla/s{seed}'
        if seed == SEEDS[0] and split == 'default':
            return bench.alias(run_id, best, phase='seeds')
        return bench.run(run_id, dataset, model, model_layer(model, params, seed),
                         {'variant': 'vanilla', 'phase': 'seeds', 'params': params}, split)

    def refined(seed: int, split: str = 'default', control: bool = False,
                extra: Optional[Dict[str, Any]] = None, label: str = '+GR'
                ) -> Optional[Dict[str, Any]]:
        fusion, kc = gr_point['fusion'], gr_point['jaccard_k']
        alphas = list(gr_point['alpha'])
        graph_keys = keys
        hook = None
        if control:
            graph_keys = [f'rand_{k}' for k in keys]
            hook = random_features(keys)
            rnd = hook(copy.copy(bench.data(dataset)))
            q = QUANTILES.index(gr_point['quantile'])
            if fusion == 'mix':
                alphas = [bench.quantile_alphas(dataset + '-rand', k, rnd)[q] for k in graph_keys]
            else:
                DATASETS.setdefault(dataset + '-rand', {**spec, 'keys': graph_keys})
                alphas = [bench.quantile_alphas(dataset + '-rand', 'concat', rnd)[q]]
        run_id = f"{name}/seeds-{split}/{label}/s{seed}"
        if seed == SEEDS[0] and split == 'default' and not control and extra is None:
            return bench.alias(run_id, gr_best, phase='seeds')
        layer = {**model_layer(model, params, seed, {'item_graph': 'data', **(extra or {})}),
                 **gr_layer(graph_keys, fusion, alphas, kc)}
        return bench.run(run_id, dataset, model, layer,
                         {'variant': label, 'phase': 'seeds', 'params': params, **gr_point,
                          'alpha': alphas}, split, data_hook=hook)

    if 'seeds' in phases:
        for seed in SEEDS:
            vanilla(seed)
            refined(seed)
    if 'control' in phases:
        for seed in SEEDS:
            refined(seed, control=True, label='+GR random features')
    if 'interest' in phases and model == 'soil':
        for seed in SEEDS:
            refined(seed, extra={'knn_i': 0}, label='+GR no interest graph')
    if 'temporal' in phases and spec['temporal'] is not None and model == 'freedom':
        split = spec['temporal']['split']
        for seed in SEEDS:
            vanilla(seed, split)
            refined(seed, split)


def benchmark_context(bench: Bench, dataset: str) -> None:
    spec = DATASETS[dataset]
    for seed in SEEDS:
        bench.run(f'{dataset}/lightgcn/s{seed}', dataset, 'lightgcn', {'train': {'seed': seed}},
                  {'variant': 'LightGCN', 'phase': 'context', 'params': {}})
        if 'x' in spec['keys']:
            bench.run(f'{dataset}/mllmrec/s{seed}', dataset, 'mllmrec', {'train': {'seed': seed}},
                      {'variant': 'MLLMRec (training-items stand-in)', 'phase': 'context',
                       'params': {}})


# ------------------------------------------------------------------ table --

def _per_user_path(out: str, run_id: str) -> str:
    return os.path.join(out, 'per_user', run_id.replace('/', '__').replace(' ', '_') + '.npz')


def _keep_per_user(out: str, run_dir: str, run_id: str) -> None:
    r"""Copies the run's per-user test Recall@20 into ``per_user/`` (kept
    with ``results.jsonl``; the run folders are not), so the paired tests
    can be recomputed in a later sitting."""
    from mllmrec_pyg.metrics.evaluator import EvaluationResult
    res = EvaluationResult.load(os.path.join(run_dir, 'per_user_test.npz'))
    path = _per_user_path(out, run_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez_compressed(path, users=res.users.numpy().astype(np.int32),
                        recall_at_20=res.per_user['recall@20'].numpy().astype(np.float32))


def _per_user(out: str, row: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    path = _per_user_path(out, row.get('same_as') or row['run'])
    if os.path.exists(path):
        with np.load(path) as f:
            return f['users'].astype(np.int64), f['recall_at_20']
    from mllmrec_pyg.metrics.evaluator import EvaluationResult
    res = EvaluationResult.load(os.path.join(out, row['run_dir'], 'per_user_test.npz'))
    return res.users.numpy(), res.per_user['recall@20'].numpy()


def _paired(out: str, a: List[Dict[str, Any]], b: List[Dict[str, Any]]) -> Optional[Tuple[float, float]]:
    r"""Paired t-test per user of the seed-averaged test R@20 of :obj:`a`
    against :obj:`b`: (mean difference, p)."""
    from scipy import stats

    def averaged(rows: List[Dict[str, Any]]) -> Tuple[np.ndarray, np.ndarray]:
        users, values = _per_user(out, rows[0])
        total = values.astype(np.float64)
        for row in rows[1:]:
            u, v = _per_user(out, row)
            if not np.array_equal(u, users):
                raise ValueError(f"{row['run']}: other test users than {rows[0]['run']}")
            total = total + v
        return users, total / len(rows)

    try:
        ua, va = averaged(a)
        ub, vb = averaged(b)
    except (OSError, KeyError, ValueError):
        return None
    if not np.array_equal(ua, ub):
        return None
    t = stats.ttest_rel(va, vb)
    return float(np.mean(va - vb)), float(t.pvalue)


def table(out: str) -> str:
    path = os.path.join(out, 'results.jsonl')
    if not os.path.exists(path):
        return f'no results yet in {path}'
    rows = [json.loads(line) for line in open(path) if line.strip()]
    lines = ['| dataset | split | row | seeds | val R@20 | test R@10 | test R@20 | test N@10 | '
             'test N@20 | +GR vs vanilla: mean diff R@20 (p) | selected |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    # The seed rows of each (dataset, split, model, variant).
    selected: Dict[Tuple[str, str, str, str], Dict[int, Dict[str, Any]]] = {}
    for row in rows:
        if row['phase'] in ('seeds', 'context'):
            key = (row['dataset'], row['split'], row['model'], row['variant'])
            selected.setdefault(key, {})[row['seed']] = row
    for (dataset, split, model, variant), by_seed in sorted(selected.items()):
        runs = [by_seed[s] for s in sorted(by_seed)]
        label = variant if model in ('lightgcn', 'mllmrec') else (
            model.upper() if variant == 'vanilla' else f'{model.upper()}{variant}')
        cells = []
        for m in ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20'):
            v = np.array([r['test'][m] for r in runs])
            cells.append(f'{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}')
        val = np.mean([r['val']['recall@20'] for r in runs])
        sig = ''
        if variant != 'vanilla' and model in ('freedom', 'soil'):
            base = selected.get((dataset, split, model, 'vanilla'))
            if base:
                common = sorted(set(base) & set(by_seed))
                test = _paired(out, [by_seed[s] for s in common], [base[s] for s in common])
                if test is not None:
                    sig = f'{test[0]:+.4f} (p={test[1]:.2g}, {len(common)} seeds)'
        chosen = ''
        ref = runs[0]
        if model in ('freedom', 'soil'):
            chosen = _tag(ref['params'])
            if 'jaccard_k' in ref:
                fusion = f"{ref.get('fusion')}, " if len(ref.get('alpha') or []) != 1 or \
                    ref.get('fusion') == 'concat' else ''
                chosen += (f"; {fusion}q={ref.get('quantile')}, alpha={ref.get('alpha')}, "
                           f"K_c={ref.get('jaccard_k')}")
        lines.append(f'| {dataset} | {split} | {label} | {len(runs)} | {val:.4f} | '
                     + ' | '.join(cells) + f' | {sig} | {chosen} |')
    grid_lines = ['', '| dataset | model | phase | setting | val R@20 | best epoch | time (s) |',
                  '|---|---|---|---|---|---|---|']
    for row in rows:
        if row['phase'] in ('grid', 'gr-grid'):
            setting = _tag(row['params'])
            if row['phase'] == 'gr-grid':
                setting = (f"{row['fusion']}, q={row['quantile']}, alpha={row['alpha']}, "
                           f"K_c={row['jaccard_k']}")
            grid_lines.append(f"| {row['dataset']} | {row['model']} | {row['phase']} | {setting} | "
                              f"{row['val']['recall@20']:.4f} | {row['best_epoch']} | "
                              f"{row['time_s']:.0f} |")
    return '\n'.join(lines + grid_lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--datasets', default='ml-100k,tiktok,sports')
    p.add_argument('--models', default='freedom,soil')
    p.add_argument('--phases', default='seeds,control,interest,context,temporal',
                   help='after the grids (always run first): seeds, control, interest '
                   '(SOIL+GR without its interest graph), context, temporal')
    p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'plug_and_play'))
    p.add_argument('--max-hours', type=float, default=8.0,
                   help='start no new run after this long (rerun to continue)')
    p.add_argument('--max-runs', type=int, default=None,
                   help='start at most this many new runs, then exit (a driver script '
                   'can then re-decide what to run next)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--table', action='store_true', help='print the results table and exit')
    args = p.parse_args(argv)
    if args.table:
        print(table(args.out))
        return 0
    if args.max_runs is not None and args.max_runs < 0:
        p.error(f'--max-runs: must be 0 or more, got {args.max_runs}')
    import torch
    torch.set_num_threads(args.threads)
    os.environ.setdefault('MLLMREC_HOME', os.path.join(args.out, 'home'))
    bench = Bench(args.out, time.time() + 3600 * args.max_hours, args.threads, args.max_runs)
    phases = [s.strip() for s in args.phases.split(',') if s.strip()]
    for dataset in [s.strip() for s in args.datasets.split(',') if s.strip()]:
        if dataset not in DATASETS:
            p.error(f"--datasets: unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
        if not os.path.isdir(os.path.join(DATA, DATASETS[dataset]['folder'])):
            log(f'{dataset}: {os.path.join(DATA, DATASETS[dataset]["folder"])} is absent: skipped')
            continue
        for model in [s.strip() for s in args.models.split(',') if s.strip()]:
            benchmark_model(bench, dataset, model, phases)
        if 'context' in phases:
            benchmark_context(bench, dataset)
    if args.max_runs is None:
        print(table(args.out))
    log(f'started {bench.started} new run(s)' + (
        '; some were running in another process' if bench.busy else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
