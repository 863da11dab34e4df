r"""The leak guard, end to end: everything that learns from interactions
sees the TRAINING edges only.  Each component is run on a dataset and on a
copy whose validation and test edges were replaced by other edges; its
output must not change."""
import copy

import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import INTERACTS, REV_INTERACTS, train_edge_index


def make_data(seed: int) -> HeteroData:
    r"""8 users, 12 items; fixed training edges; validation and test edges
    drawn with :obj:`seed`."""
    gen = torch.Generator().manual_seed(0)
    users = torch.arange(8).repeat_interleave(4)
    items = torch.stack([torch.randperm(12, generator=gen)[:4] for _ in range(8)]).view(-1)
    train = torch.stack([users, items])
    gen = torch.Generator().manual_seed(seed)
    held = []
    for u in range(8):
        free = [i for i in torch.randperm(12, generator=gen).tolist()
                if i not in items[users == u].tolist()]
        held += [[u, free[0]], [u, free[1]]]
    held_t = torch.tensor(held).t()
    data = HeteroData()
    data['user'].num_nodes = 8
    data['item'].num_nodes = 12
    data['user'].raw_id = [str(u) for u in range(8)]
    data['item'].raw_id = [str(i) for i in range(12)]
    data['item'].x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    data['user'].x = torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    edge_index = torch.cat([train, held_t], 1)
    n_train, n_held = train.size(1), held_t.size(1)
    store = data[INTERACTS]
    store.edge_index = edge_index
    store.train_mask = torch.arange(n_train + n_held) < n_train
    store.val_mask = torch.zeros(n_train + n_held, dtype=torch.bool)
    store.val_mask[n_train::2] = True
    store.test_mask = ~store.train_mask & ~store.val_mask
    rev = data[REV_INTERACTS]
    rev.edge_index = edge_index.flip(0)
    for name in ('train_mask', 'val_mask', 'test_mask'):
        rev[name] = store[name]
    data.name, data.domain = 'leak', 'Things'
    return data


def test_the_two_datasets_differ_only_in_held_out_edges():
    a, b = make_data(10), make_data(11)
    assert torch.equal(train_edge_index(a), train_edge_index(b))
    assert not torch.equal(a[INTERACTS].edge_index, b[INTERACTS].edge_index)


def test_item_graph_sees_training_edges_only():
    from mllmrec_pyg.transforms import RefineItemGraph
    transform = RefineItemGraph(knn_k=3, alpha=0.0, jaccard_k=3)
    a, b = transform(make_data(10)), transform(make_data(11))
    for rel in (('item', 'cooccurs', 'item'), ('item', 'similar', 'item')):
        assert torch.equal(a[rel].edge_index, b[rel].edge_index)
        assert torch.equal(a[rel].edge_weight, b[rel].edge_weight)


def test_preference_prompts_see_training_edges_only():
    from mllmrec_pyg.llm.prefer import build_preference_prompts
    descriptions = [f'item number {i}' for i in range(12)]
    a = build_preference_prompts(make_data(10), descriptions)
    b = build_preference_prompts(make_data(11), descriptions)
    assert [p.prompt for p in a.prompts] == [p.prompt for p in b.prompts]
    assert [p.item_indices for p in a.prompts] == [p.item_indices for p in b.prompts]


def test_training_sees_training_edges_only():
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import Trainer

    states = []
    for seed in (10, 11):
        data = make_data(seed)
        torch.manual_seed(0)
        model = build_model('lightgcn', data, embedding_dim=4)
        trainer = Trainer(model, data, batch_size=8, seed=0, progress=False,
                          ks=(5, 10), val_metric='recall@10')
        for _ in range(3):
            trainer.train_epoch()
        states.append(copy.deepcopy(model.state_dict()))
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
