r"""The training objectives shared by the recommenders of this package."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
    total = torch.stack([emb.norm(p=2) for emb in embeddings]).sum()
    return total / embeddings[-1].size(0)
