from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

#: The modality that gets the small weight of FREEDOM's default mix.
IMAGE_FEATURE = 'image_feat'


def modality_weights_default(names: Sequence[str],
                             image_weight: float = 0.1) -> List[float]:
    r"""The default weights :math:`w_m` with which the per-modality item
    graphs (or features) are mixed, in the order of :obj:`names`, FREEDOM's
    convention (`Zhou and Shen, MM'23 <https://arxiv.org/abs/2211.06924>`_,
    :obj:`mm_image_weight`):

    * one modality: weight :obj:`1`;
    * :obj:`"image_feat"` among two or more modalities: :obj:`image_weight`
      for it and :math:`(1 - \text{image\_weight}) / (M - 1)` for each of the
      others (with exactly image and text this is FREEDOM's
      :math:`0.1\,\mathbf{S}^{v} + 0.9\,\mathbf{S}^{t}`);
    * no image among :math:`M \ge 2` modalities: :math:`1/M` each.

    Args:
        names (Sequence[str]): The modality names (feature attributes).
        image_weight (float, optional): The weight of
            :obj:`"image_feat"`. (default: :obj:`0.1`)
    """
    n = len(names)
    if n == 0:
        return []
    if n == 1:
        return [1.0]
    if IMAGE_FEATURE in names:
        rest = (1.0 - image_weight) / (n - 1)
        return [image_weight if name == IMAGE_FEATURE else rest for name in names]
    return [1.0 / n] * n


def check_modality_weights(keys: Sequence[str],
                           weights: Optional[Sequence[float]],
                           owner: str) -> List[float]:
    r"""Returns :obj:`weights` (or :func:`modality_weights_default`) checked
    against :obj:`keys`: one non-negative weight per key, not all zero."""
    if weights is None:
        return modality_weights_default(list(keys))
    weights = [float(w) for w in weights]
    if len(weights) != len(keys):
        raise ValueError(f"{owner}: 'modality_weights' has {len(weights)} "
                         f"value(s) for {len(keys)} key(s) {list(keys)}: "
                         f"give one weight per key")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"{owner}: 'modality_weights' must be finite, "
                         f">= 0 and not all zero (got {weights})")
    return weights


@functional_transform('fuse_features')
class FuseFeatures(BaseTransform):
    r"""Fuses several item modalities into one feature matrix whose cosine
    similarity is the weighted mean of the modalities' cosine similarities
    (functional name: :obj:`fuse_features`).

    Each modality :math:`\mathbf{F}^{m}` is L2-normalised row-wise and
    scaled by :math:`\sqrt{w_m / \sum_{m'} w_{m'}}`, and the blocks are
    concatenated:

    .. math::
        \mathbf{z}_i = \Big\Vert_{m} \sqrt{\bar{w}_m}\,
        \frac{\mathbf{f}^{m}_i}{\|\mathbf{f}^{m}_i\|}, \qquad
        \cos(\mathbf{z}_i, \mathbf{z}_j) = \sum_m \bar{w}_m
        \cos(\mathbf{f}^{m}_i, \mathbf{f}^{m}_j)

    (exactly, for items whose features are non-zero in every modality; a
    zero row stays a zero block).  :class:`ThresholdKNN` on
    :obj:`out_key` then thresholds the fused similarity with one
    :math:`\alpha`: the "fused features" way of refining a multimodal item
    graph (:class:`RefineItemGraph` with :obj:`fusion="concat"`).

    Args:
        keys (Sequence[str]): The feature attributes of
            :obj:`data[node_type]` to fuse (at least one).
        modality_weights (Sequence[float], optional): :math:`w_m`, one per
            key; :obj:`None` takes :func:`modality_weights_default`.
            (default: :obj:`None`)
        out_key (str, optional): The attribute written.
            (default: :obj:`"x_fused"`)
        node_type (str, optional): The node type of the items.
            (default: :obj:`"item"`)
    """
    def __init__(
        self,
        keys: Sequence[str],
        modality_weights: Optional[Sequence[float]] = None,
        out_key: str = 'x_fused',
        node_type: str = 'item',
    ) -> None:
        if isinstance(keys, str) or len(keys) == 0:
            raise ValueError(f"FuseFeatures: 'keys' must be a non-empty list "
                             f"of feature attributes (got {keys!r})")
        self.keys = list(keys)
        self.modality_weights = check_modality_weights(self.keys, modality_weights,
                                                       'FuseFeatures')
        self.out_key = out_key
        self.node_type = node_type

    def forward(self, data: HeteroData) -> HeteroData:
        store = data[self.node_type]
        total = sum(self.modality_weights)
        blocks: List[Tensor] = []
        for key, weight in zip(self.keys, self.modality_weights, strict=True):
            x = getattr(store, key, None)
            if not isinstance(x, Tensor) or x.dim() != 2:
                raise ValueError(f"FuseFeatures: data['{self.node_type}'].{key} "
                                 f"is missing or not a [num_items, F] tensor; "
                                 f"pass the attributes present as 'keys'")
            if blocks and x.size(0) != blocks[0].size(0):
                raise ValueError(f"FuseFeatures: data['{self.node_type}'].{key} "
                                 f"has {x.size(0)} rows, {self.keys[0]} "
                                 f"{blocks[0].size(0)}: one row per item")
            x = x.float()
            norm = x.norm(dim=1, keepdim=True)
            unit = torch.where(norm > 0, x / norm.clamp_min(1e-12),
                               torch.zeros_like(x))
            blocks.append(unit * math.sqrt(weight / total))
        setattr(store, self.out_key, torch.cat(blocks, dim=1))
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keys={self.keys}, '
                f'modality_weights={self.modality_weights})')
