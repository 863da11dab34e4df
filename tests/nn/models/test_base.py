from typing import Tuple

import pytest
import torch
from torch import Tensor

from mllmrec_pyg.nn.models import Recommender


class Fixed(Recommender):
    r"""Scores = USER (item embeddings are the identity)."""
    def embed(self) -> Tuple[Tensor, Tensor]:
        return USER, torch.eye(4)


USER = torch.tensor([[9., 8., 7., 1.], [1., 9., 8., 7.]])


def test_forward_scores_pairs():
    model = Fixed()
    score = model(torch.tensor([0, 1, 1]), torch.tensor([3, 0, 2]))
    assert score.tolist() == [1.0, 1.0, 8.0]


def test_recommend_excludes_and_clips_k():
    model = Fixed()
    user = torch.tensor([1, 0])
    assert model.recommend(user, 2).tolist() == [[1, 2], [0, 1]]
    # (position 0 = user 1, item 1), (position 1 = user 0, items 0 and 1).
    exclude = torch.tensor([[0, 1, 1], [1, 0, 1]])
    assert model.recommend(user, 2, exclude).tolist() == [[2, 3], [2, 3]]
    # k above the catalogue: every item, the excluded ones last.
    top = model.recommend(user, 10, exclude)
    assert top.shape == (2, 4)
    assert top[:, :2].tolist() == [[2, 3], [2, 3]]


def test_interface_is_abstract():
    model = Recommender()
    with pytest.raises(NotImplementedError):
        model.embed()
    with pytest.raises(NotImplementedError):
        model.loss(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
