r"""The training objectives shared by the recommenders of this package."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mllmrec_pyg import distributed


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Returns the mean Bayesian Personalized Ranking loss of `"BPR"
    <https://arxiv.org/abs/1205.2618>`_ (the objective of `"MLLMRec"
    <https://arxiv.org/abs/2508.15304>`_) over a batch of
    (user, positive item, negative item) triples:

    .. math::
        \mathcal{L}_{\mathrm{BPR}} = -\frac{1}{B} \sum_{(u, i, j)}
        \ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})

    It equals MMRec's :obj:`BPRLoss` (which adds :obj:`1e-10` inside the
    logarithm) up to that guard, computed stably by
    :func:`torch.nn.functional.logsigmoid`.

    Args:
        pos_score (torch.Tensor): Scores :math:`\hat{y}_{ui}`, shape
            :obj:`[B]`.
        neg_score (torch.Tensor): Scores :math:`\hat{y}_{uj}`, shape
            :obj:`[B]`.
    """
    return -F.logsigmoid(pos_score - neg_score).mean()


def embedding_norm_loss(*embeddings: Tensor) -> Tensor:
    r"""Returns MMRec's embedding regulariser (:obj:`EmbLoss`): the sum of
    the Frobenius norms (not squared) of the batch's embedding matrices,
    divided by the batch size :math:`B`:

    .. math::
        \mathcal{L}_{\mathrm{reg}} = \frac{1}{B} \sum_{k}
        \lVert \mathbf{E}_k \rVert_F

    Multiplied by a model's :obj:`reg_weight`, this is the regularisation
    of MMRec's BPR, LightGCN and VBPR, so that their published settings
    carry over unchanged.

    Args:
        *embeddings (torch.Tensor): Batch embedding matrices, each with
            :math:`B` rows.
    """
    if len(embeddings) == 0:
        raise ValueError("'embedding_norm_loss' needs at least one tensor")
    shard = distributed.current_global_batch()
    if shard is not None and distributed.is_distributed():
        return _sharded_embedding_norm_loss(embeddings, *shard)
    total = torch.stack([emb.norm(p=2) for emb in embeddings]).sum()
    return total / embeddings[-1].size(0)


def _sharded_embedding_norm_loss(embeddings: tuple[Tensor, ...], size: int,
                                 rows: int) -> Tensor:
    r""":func:`embedding_norm_loss` of this rank's :obj:`rows` rows of a
    global batch of :obj:`size` rows (:class:`~mllmrec_pyg.train.Trainer`
    under :mod:`torch.distributed`).  The norm of the GLOBAL batch is not a
    mean over rows, so each rank returns the surrogate

    .. math::
        \frac{1}{n_r} \sum_k \frac{\lVert \mathbf{E}_k^{(r)}
        \rVert_F^2}{\lVert \mathbf{E}_k \rVert_F}

    (the global norms all-reduced, without gradient; half of it detached)
    whose value and gradient, weighted by :math:`n_r / B` as the trainer's
    DDP step weights a shard, sum over the ranks to the single-process
    loss and gradient."""
    squares = torch.stack([emb.pow(2).sum() for emb in embeddings])
    total = squares.detach().clone() if rows > 0 else torch.zeros_like(squares)
    torch.distributed.all_reduce(total)
    half = squares / (2 * total.sqrt().clamp_min(1e-30))
    return (half + half.detach()).sum() / max(embeddings[-1].size(0), 1)
