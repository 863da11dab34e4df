import torch

from mllmrec_pyg.utils import topk_items

# Scores = USER (item embeddings are the identity).
USER = torch.tensor([[9., 8., 7., 1.], [1., 9., 8., 7.], [6., 5., 4., 9.]])
ITEM = torch.eye(4)


def test_topk_items_exact():
    user = torch.tensor([2, 0])
    assert topk_items(USER, ITEM, user, 2).tolist() == [[3, 0], [0, 1]]
    # (position 0 = user 2, item 3) and (position 1 = user 0, item 0).
    exclude = torch.tensor([[0, 1], [3, 0]])
    assert topk_items(USER, ITEM, user, 2, exclude).tolist() == [[0, 1],
                                                                 [1, 2]]


def test_topk_items_clips_k_and_ranks_excluded_last():
    exclude = torch.tensor([[0, 0, 0], [0, 1, 2]])
    top = topk_items(USER, ITEM, torch.tensor([0]), 10, exclude)
    assert top.shape == (1, 4)
    assert top[0, 0].item() == 3


def test_topk_items_chunks_agree_with_one_product():
    torch.manual_seed(0)
    user_emb, item_emb = torch.randn(7, 3), torch.randn(9, 3)
    user = torch.tensor([6, 0, 3, 3, 1, 5, 2])
    # Unsorted exclusions, straddling every chunk boundary.
    exclude = torch.tensor([[5, 0, 2, 2, 6, 3, 0, 4],
                            [8, 1, 0, 7, 4, 4, 5, 2]])
    full = topk_items(user_emb, item_emb, user, 4, exclude)
    for batch_size in (1, 2, 3, 7, 100):
        assert torch.equal(topk_items(user_emb, item_emb, user, 4, exclude,
                                      batch_size), full)
    scores = user_emb[user] @ item_emb.t()
    scores[exclude[0], exclude[1]] = float('-inf')
    assert torch.equal(full, scores.topk(4, dim=1).indices)


def test_topk_items_no_user():
    out = topk_items(USER, ITEM, torch.empty(0, dtype=torch.long), 2,
                     batch_size=2)
    assert out.shape == (0, 2)
