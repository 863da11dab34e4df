r"""Times one :class:`~mllmrec_pyg.nn.conv.LightGCNConv` layer on a
160k-interaction bipartite graph (Amazon Baby's shape: 19,445 users, 7,050
items, 160,792 interactions, both directions, symmetrically normalised),
forward and forward+backward, through each input format:

- ``edge_index``: gather/scatter per edge (:meth:`message` + aggregation),
- ``csr``: fused :func:`torch.sparse.mm` on a :class:`torch.sparse_csr`
  adjacency,
- ``EdgeIndex``: fused product on a column-sorted, cached
  :class:`~torch_geometric.EdgeIndex` (what the models train with),
- ``EdgeIndex-pyg``: the same graph through PyG's generic
  :meth:`EdgeIndex.matmul` called directly, for comparison.

The graph is Baby's real interaction structure when ``../shared/data`` is
present (used only as a graph to time; no learning), a random graph of the
same size otherwise.  Prints median milliseconds over ``--repeat`` runs.

    python benchmarks/lightgcn_conv.py [--channels 64] [--repeat 20]
        [--device cpu|cuda] [--threads N]
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import time
from typing import Callable

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from mllmrec_pyg.nn.adjacency import bipartite_adjacency
from mllmrec_pyg.nn.conv import LightGCNConv

NUM_USERS, NUM_ITEMS, NUM_INTERACTIONS = 19_445, 7_050, 160_792
BABY = (pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' /
        'amazon-baby' / 'baby.inter')


def _interactions() -> tuple[Tensor, str]:
    if BABY.is_file():
        import pandas as pd
        frame = pd.read_csv(BABY, sep='\t')
        index = torch.tensor(frame[['userID', 'itemID']].to_numpy().T)
        return index, f'Amazon Baby interactions ({BABY})'
    gen = torch.Generator().manual_seed(0)
    user = torch.randint(NUM_USERS, (NUM_INTERACTIONS, ), generator=gen)
    item = torch.randint(NUM_ITEMS, (NUM_INTERACTIONS, ), generator=gen)
    return torch.stack([user, item]), 'random graph of Baby\'s size'


def _time(fn: Callable[[], None], repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    interactions, source = _interactions()
    num_nodes = NUM_USERS + NUM_ITEMS
    csr = bipartite_adjacency(interactions, NUM_USERS, NUM_ITEMS).to(device)
    user, item = interactions[0], interactions[1] + NUM_USERS
    edge_index = torch.cat([torch.stack([user, item]),
                            torch.stack([item, user])], dim=1)
    edge_index = torch.unique(edge_index, dim=1)
    edge_index, edge_weight = gcn_norm(edge_index, None, num_nodes,
                                       add_self_loops=False)
    sorted_index, perm = EdgeIndex(edge_index.contiguous(), sparse_size=(
        num_nodes, num_nodes)).sort_by('col')
    edge_index, edge_weight = edge_index.to(device), edge_weight.to(device)
    sorted_index, sorted_weight = sorted_index.to(device), edge_weight[perm]
    sorted_index.fill_cache_()

    conv = LightGCNConv()
    x = torch.randn(num_nodes, args.channels, device=device)
    inputs = {
        'edge_index': (edge_index, edge_weight),
        'csr': (csr, None),
        'EdgeIndex': (sorted_index, sorted_weight),
        'EdgeIndex-pyg': (sorted_index, sorted_weight),
    }
    reference = conv(x, edge_index, edge_weight)
    print(f'graph: {source}; {num_nodes} nodes, {edge_index.size(1)} '
          f'directed edges; x: [{num_nodes}, {args.channels}]; '
          f'device: {device}; torch threads: {torch.get_num_threads()}')
    print(f'{"input":>12} {"forward ms":>11} {"fwd+bwd ms":>11} '
          f'{"max |diff|":>11}')
    for name, (adj, weight) in inputs.items():
        out = conv(x, adj, weight) if name != 'EdgeIndex-pyg' else (
            adj.matmul(x, input_value=weight, transpose=True))
        diff = (out - reference).abs().max().item()

        layer: Callable[..., Tensor] = conv
        if name == 'EdgeIndex-pyg':
            def layer(x: Tensor, adj: EdgeIndex, weight: Tensor) -> Tensor:
                return adj.matmul(x, input_value=weight, transpose=True)

        def forward(adj=adj, weight=weight, layer=layer) -> None:
            with torch.no_grad():
                layer(x, adj, weight)

        def backward(adj=adj, weight=weight, layer=layer) -> None:
            x_grad = x.detach().requires_grad_()
            layer(x_grad, adj, weight).sum().backward()

        fwd = _time(forward, args.repeat, device)
        bwd = _time(backward, args.repeat, device)
        print(f'{name:>12} {fwd:>11.1f} {bwd:>11.1f} {diff:>11.2e}')


if __name__ == '__main__':
    main()
