r"""The item graph built over a process group equals the one-process build
exactly (edges, order, weights, ties).

One spawned job of two gloo ranks runs every case of :data:`CASES` (process
start-up dominates the cost) and saves each rank's outputs; each test then
compares both ranks' outputs with the case run here without a group.  A
rank that raises ends the job at once (:func:`torch.multiprocessing.spawn`
stops the others), and every collective has a 60 s timeout.
"""
import datetime
import os
import time
from typing import Any, Callable, Dict, Optional

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch_geometric.data import Data, HeteroData

from mllmrec_pyg.distributed import shard_bounds
from mllmrec_pyg.transforms import (
    CandidateCache,
    JaccardCoOccurrence,
    RefineItemGraph,
    ThresholdKNN,
)
from mllmrec_pyg.transforms._distributed import grid_blocks
from mllmrec_pyg.transforms._ivf import _cluster_range, ivf_topk
from mllmrec_pyg.transforms._jaccard import jaccard_topk
from mllmrec_pyg.transforms._topk import cosine_topk
from tests.transforms._failing_rank import failing_worker

WORLD = 2
TIMEOUT = datetime.timedelta(seconds=60)

Outputs = Dict[str, torch.Tensor]


def tied_features(n: int, seed: int = 0) -> torch.Tensor:
    # Small integer features: many duplicate rows and equal cosines, so
    # ties straddle the k-th place; a few zero rows have no cosine at all.
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (n, 4), generator=gen).float()
    x[::37] = 0.0
    return x


def clustered_features(n: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 16, generator=gen)
    pick = torch.randint(6, (n, ), generator=gen)
    return centres[pick] + 0.3 * torch.randn(n, 16, generator=gen)


def interactions(num_users: int, num_items: int, seed: int = 2) -> HeteroData:
    gen = torch.Generator().manual_seed(seed)
    num_edges = 4 * num_items
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].x = tied_features(num_items, seed)
    data['item'].image_feat = clustered_features(num_items, seed)
    store = data['user', 'interacts', 'item']
    # Popular items and repeated pairs: many equal Jaccard weights.
    store.edge_index = torch.stack([
        torch.randint(num_users, (num_edges, ), generator=gen),
        torch.randint(num_items, (num_edges, ), generator=gen) % max(
            1, num_items)])
    store.train_mask = torch.rand(num_edges, generator=gen) < 0.8
    return data


def triple(out) -> Outputs:
    return dict(row=out[0], col=out[1], value=out[2])


def stores(data: Any, *types) -> Outputs:
    out = {}
    for edge_type in types:
        store = data[edge_type] if isinstance(data, HeteroData) else data
        out[f'{edge_type}.edge_index'] = store.edge_index
        out[f'{edge_type}.edge_weight'] = store.edge_weight
    return out


def refine(group: Optional[Any], **kwargs) -> Outputs:
    data = RefineItemGraph(**kwargs, group=group)(interactions(40, 301))
    relations = [t for t in data.edge_types if t[0] == 'item']
    return stores(data, *relations)


def with_cache(group: Optional[Any]) -> Outputs:
    cache = CandidateCache(jaccard_k=6)
    out = {}
    for alpha, k_c in ((0.2, 6), (0.5, 3)):
        out.update({f'{alpha}/{k}': v for k, v in refine(
            group, knn_k=5, alpha=alpha, jaccard_k=k_c, chunk_size=32,
            candidates=cache).items()})
    out['calls'] = torch.tensor([cache.searches['knn'], cache.hits['knn'],
                                 cache.searches['jaccard'],
                                 cache.hits['jaccard']])
    return out


def edges(n: int) -> HeteroData:
    return interactions(30, n)['user', 'interacts', 'item'].edge_index


#: Each case runs with group=None here and with the 2-rank group in the
#: spawned job; both must give the same tensors.
CASES: Dict[str, Callable[[Optional[Any]], Outputs]] = {
    # The query blocks (16 rows) straddle the split at item 151.
    'exact_chunked': lambda g: triple(cosine_topk(
        tied_features(301), 5, False, chunk_size=16, group=g)),
    # Several column blocks per query block, odd block sizes.
    'exact_column_blocks': lambda g: triple(cosine_topk(
        tied_features(301), 4, False, chunk_size=7, block_elements=64,
        group=g)),
    # One block of all rows: both ranks compute it, each keeps its half.
    'exact_self': lambda g: triple(cosine_topk(
        tied_features(300), 6, True, group=g)),
    'exact_clustered': lambda g: triple(cosine_topk(
        clustered_features(257), 10, False, chunk_size=50, group=g)),
    'ivf_tied': lambda g: triple(ivf_topk(
        tied_features(301), 5, False, nlist=10, nprobe=3, group=g)),
    'ivf_self': lambda g: triple(ivf_topk(
        clustered_features(257), 8, True, nlist=17, nprobe=4, iterations=3,
        group=g)),
    'ivf_defaults': lambda g: triple(ivf_topk(
        clustered_features(400), 10, False, group=g)),
    'jaccard': lambda g: triple(jaccard_topk(
        edges(301), 30, 301, 4, block_nonzeros=50, group=g)),
    'jaccard_one_block': lambda g: triple(jaccard_topk(
        edges(300), 30, 300, 10, group=g)),
    'threshold_knn': lambda g: stores(ThresholdKNN(
        k=5, alpha=0.3, chunk_size=16, group=g)(Data(x=tied_features(301))),
        'knn'),
    'jaccard_cooccurrence': lambda g: stores(JaccardCoOccurrence(
        4, group=g)(interactions(40, 301)), ('item', 'cooccurs', 'item')),
    'refine_exact': lambda g: refine(g, knn_k=5, alpha=0.3, jaccard_k=4,
                                     chunk_size=16, symmetrize=True),
    'refine_ivf_mix': lambda g: refine(g, knn_k=5, alpha=0.2, jaccard_k=4,
                                       key=['x', 'image_feat'], backend='ivf',
                                       nlist=8, nprobe=2),
    'cache': with_cache,
    # One item: rank 1 owns no row.
    'one_item_exact': lambda g: triple(cosine_topk(
        torch.ones(1, 3), 3, True, group=g)),
    'one_item_ivf': lambda g: triple(ivf_topk(
        torch.ones(1, 3), 3, True, group=g)),
    'one_item_jaccard': lambda g: triple(jaccard_topk(
        torch.tensor([[0, 1], [0, 0]]), 2, 1, 3, group=g)),
    'three_items': lambda g: triple(cosine_topk(
        torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), 1, False,
        group=g)),
    'three_items_ivf': lambda g: triple(ivf_topk(
        torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), 1, False,
        nlist=2, nprobe=1, group=g)),
}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=WORLD, timeout=TIMEOUT)
    try:
        results = {name: case(dist.group.WORLD)
                   for name, case in CASES.items()}
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def sharded(tmp_path_factory) -> list:
    tmp = tmp_path_factory.mktemp('sharded')
    mp.spawn(_worker, args=(str(tmp / 'init'), str(tmp)), nprocs=WORLD,
             join=True)
    return [torch.load(tmp / f'rank{rank}.pt') for rank in range(WORLD)]


@pytest.mark.parametrize('name', list(CASES))
def test_sharded_equals_one_process(sharded, name):
    expected = CASES[name](None)
    for rank, results in enumerate(sharded):
        got = results[name]
        assert got.keys() == expected.keys(), rank
        for key, value in expected.items():
            assert got[key].dtype == value.dtype, (rank, key)
            # Bitwise: same edges, same order, same weights.
            assert torch.equal(got[key], value), (rank, key)


def test_sharded_cases_are_not_trivial(sharded):
    assert sharded[0]['exact_chunked']['row'].numel() == 5 * 292
    assert sharded[0]['one_item_exact']['row'].tolist() == [0]
    # The sweep searched once and hit after, on every rank.
    assert sharded[1]['cache']['calls'].tolist() == [1, 1, 1, 1]


def test_failing_rank_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(Exception, match='rank 1 failed on purpose'):
        mp.spawn(failing_worker, args=(str(tmp_path / 'init'), ),
                 nprocs=WORLD, join=True)
    assert time.monotonic() - start < TIMEOUT.total_seconds()


def test_shard_bounds_and_grid_blocks():
    assert [shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(1, r, 2) for r in range(2)] == [(0, 1), (1, 1)]
    assert list(grid_blocks(3, 9, 4, 10)) == [(0, 4), (4, 8), (8, 10)]
    assert list(grid_blocks(4, 8, 4, 10)) == [(4, 8)]
    assert list(grid_blocks(5, 5, 4, 10)) == []


def test_item_range_is_a_slice_of_the_full_search():
    x = tied_features(101)
    full = cosine_topk(x, 4, False, chunk_size=8)
    parts = [cosine_topk(x, 4, False, chunk_size=8, item_range=(a, b))
             for a, b in ((0, 13), (13, 14), (14, 14), (14, 101))]
    for i in range(3):
        assert torch.equal(torch.cat([p[i] for p in parts]), full[i])
    jac = jaccard_topk(edges(50), 30, 50, 3, block_nonzeros=20)
    parts = [jaccard_topk(edges(50), 30, 50, 3, block_nonzeros=20,
                          item_range=r) for r in ((0, 21), (21, 50))]
    for i in range(3):
        assert torch.equal(torch.cat([p[i] for p in parts]), jac[i])


def test_cluster_ranges_cover_every_cluster_once():
    # Work per cluster: |c| (|c| + sum of its probes' sizes).
    counts = torch.tensor([4, 0, 2, 2])
    probes = torch.tensor([[0, 2], [1, 0], [2, 3], [3, 2]])
    # Costs 4 (4 + 6) = 40, 0, 2 (2 + 4) = 12, 12; middles 20, 40, 46, 58
    # of 64: rank 0 of 2 takes cluster 0 (20 < 32), rank 1 the rest.
    assert [_cluster_range(counts, probes, r, 2) for r in range(2)] == \
        [(0, 1), (1, 4)]
    assert [_cluster_range(counts, probes, r, 3) for r in range(3)] == \
        [(0, 1), (1, 2), (2, 4)]


def test_group_errors():
    with pytest.raises(ValueError, match='not initialised'):
        ThresholdKNN(group=object())
    with pytest.raises(ValueError, match='cannot be sharded'):
        ThresholdKNN(backend='faiss', group=object())
    with pytest.raises(ValueError, match='not initialised'):
        JaccardCoOccurrence(group=object())
