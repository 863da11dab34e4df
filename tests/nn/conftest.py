import pytest
import torch
from torch_geometric.data import HeteroData


def make_tiny_data() -> HeteroData:
    r"""3 users, 4 items.  Training: u0-{i0, i1}, u1-i1, u2-{i2, i3};
    validation: u0-i2, u2-i0; test: u1-i3.  The refined item graph, in
    matrix coordinates (row 0 receives): i0 <- i1 (0.5), i1 <- i0 (0.5),
    i2 <- i3 (0.25); i3 receives nothing."""
    data = HeteroData()
    data['user'].num_nodes = 3
    data['item'].num_nodes = 4
    data['user'].x = torch.tensor([[1., 0., 0., 0.], [0., 1., 0., 0.],
                                   [0., 0., 1., 1.]])
    data['item'].x = torch.eye(4)
    data['user', 'interacts', 'item'].edge_index = torch.tensor(
        [[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 1, 3, 2, 3, 0]])
    data['user', 'interacts', 'item'].train_mask = torch.tensor(
        [True, True, False, True, False, True, True, False])
    data['user', 'interacts', 'item'].val_mask = torch.tensor(
        [False, False, True, False, False, False, False, True])
    data['user', 'interacts', 'item'].test_mask = torch.tensor(
        [False, False, False, False, True, False, False, False])
    data['item', 'similar', 'item'].edge_index = torch.tensor([[0, 1, 2],
                                                               [1, 0, 3]])
    data['item', 'similar', 'item'].edge_weight = torch.tensor([0.5, 0.5,
                                                                0.25])
    return data


@pytest.fixture
def tiny_data() -> HeteroData:
    return make_tiny_data()


#: The training triples (user, positive, negative) of :func:`make_tiny_data`
#: with a fixed non-interacted negative each.
TRIPLES = (torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 2, 3]),
           torch.tensor([3, 3, 0, 1, 1]))
