import torch

from mllmrec_pyg import transforms
from mllmrec_pyg.transforms.knn_recall import knn_recall

# Exact neighbours (cosine, self excluded): 0 -> 1, 1 -> 0, 2 -> 1;
# item 3 is a zero vector and never a neighbour.
X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])


def test_knn_recall_public_and_exact():
    assert transforms.knn_recall is knn_recall
    sample = torch.tensor([0, 1, 2])
    # Approximate lists: 0 -> 2 (miss), 1 -> 0 (hit), 2 -> 1 (hit).
    row, col = torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0])
    assert knn_recall(X, col, row, 1, sample) == 2 / 3
    # The threshold drops exact neighbours below it: cos(0, 1) = 0.707...
    # is kept at 0.7, so the same lists keep 2 of 3; at 0.8 none is due.
    assert knn_recall(X, col, row, 1, sample, alpha=0.7) == 2 / 3
    assert knn_recall(X, col, row, 1, sample, alpha=0.8) == 1.0
