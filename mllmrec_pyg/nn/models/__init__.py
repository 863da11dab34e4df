r"""Recommenders sharing the :class:`Recommender` interface, and
:func:`build_model`, which the trainer and the command line use."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Type

from torch_geometric.data import HeteroData

from .base import Recommender
from .bprmf import BPRMF
from .freedom import FREEDOM
from .lightgcn import LightGCN
from .mllmrec import ITEM_SIMILAR, MLLMRec, item_graph_propagation
from .soil import SOIL
from .vbpr import VBPR

#: The models :func:`build_model` knows, by command-line name.
MODELS: Dict[str, Type[Recommender]] = {
    'mllmrec': MLLMRec,
    'lightgcn': LightGCN,
    'bpr': BPRMF,
    'vbpr': VBPR,
    'freedom': FREEDOM,
    'soil': SOIL,
}


def build_model(name: str, data: HeteroData, **config: Any) -> Recommender:
    r"""Builds the recommender :obj:`name` (:obj:`"mllmrec"`,
    :obj:`"lightgcn"`, :obj:`"bpr"` or :obj:`"vbpr"`) for :obj:`data`
    through its :meth:`from_data`, with :obj:`config` as keyword arguments
    of its constructor.

    Args:
        name (str): The model name (case-insensitive).
        data (torch_geometric.data.HeteroData): The dataset.
        **config (optional): Constructor arguments, e.g.
            :obj:`reg_weight=1e-3`.
    """
    cls = MODELS.get(name.lower())
    if cls is None:
        raise ValueError(f"Unknown model '{name}' (expected one of "
                         f"{', '.join(repr(k) for k in MODELS)})")
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ValueError(f"Unknown option(s) {', '.join(unknown)} for model "
                         f"'{name}' (its options: "
                         f"{', '.join(p for p in accepted if p != 'self')})")
    return cls.from_data(data, **config)

__all__ = [
    'Recommender',
    'MLLMRec',
    'LightGCN',
    'BPRMF',
    'VBPR',
    'FREEDOM',
    'SOIL',
    'ITEM_SIMILAR',
    'MODELS',
    'build_model',
    'item_graph_propagation',
]
