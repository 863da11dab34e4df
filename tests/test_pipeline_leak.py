r"""User features averaged over TRAINING items vs over the FULL history
(:func:`mllmrec_pyg.pipeline.mean_of_items`)."""
import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.data import INTERACTS
from mllmrec_pyg.llm.prefer import FullHistoryLeakWarning
from mllmrec_pyg.pipeline import (
    FullHistoryMeanLeakWarning,
    mean_of_items,
    mean_of_training_items,
)


def make_data() -> HeteroData:
    r"""3 users, 4 items; user 2 has no training item."""
    # (user, item, split) with split 0/1/2 = train/valid/test.
    edges = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
             (1, 3, 0), (1, 0, 1), (1, 1, 2),
             (2, 2, 1), (2, 1, 2)]
    split = torch.tensor([s for _, _, s in edges])
    data = HeteroData()
    data['user'].num_nodes = 3
    data['item'].num_nodes = 4
    store = data[INTERACTS]
    store.edge_index = torch.tensor([[u for u, _, _ in edges],
                                     [i for _, i, _ in edges]])
    store.train_mask = split == 0
    store.val_mask = split == 1
    store.test_mask = split == 2
    return data


ITEM_X = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0], [8.0, -8.0]])


def test_train_mean_uses_training_items_only():
    out = mean_of_items(make_data(), ITEM_X, source='train')
    expected = torch.tensor([[0.5, 1.0],    # items 0, 1
                             [8.0, -8.0],   # item 3
                             [0.0, 0.0]])   # no training item
    assert torch.equal(out, expected)
    assert torch.equal(mean_of_training_items(make_data(), ITEM_X), expected)


def test_full_history_mean_includes_held_out_items_and_warns():
    with pytest.warns(FullHistoryMeanLeakWarning, match='LEAK'):
        out = mean_of_items(make_data(), ITEM_X, source='full_history')
    expected = torch.tensor([[13.0 / 4, -2.0 / 4],  # items 0, 1, 2, 3
                             [3.0, -2.0],           # items 3, 0, 1
                             [2.0, 3.0]])           # items 2, 1
    assert torch.allclose(out, expected)
    # One filter catches the leaky preferences and the leaky means alike.
    assert issubclass(FullHistoryMeanLeakWarning, FullHistoryLeakWarning)


def test_train_mean_does_not_warn_and_unknown_source_raises():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        mean_of_items(make_data(), ITEM_X)
    with pytest.raises(ValueError, match='Unknown source'):
        mean_of_items(make_data(), ITEM_X, source='valid')  # type: ignore[arg-type]
