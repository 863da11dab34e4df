r"""Layers, losses and recommenders."""
from .conv import LightGCNConv
from .loss import bpr_loss, embedding_norm_loss
from .models import (
    BPRMF,
    VBPR,
    LightGCN,
    MLLMRec,
    Recommender,
    build_model,
    item_graph_propagation,
)

__all__ = [
    'LightGCNConv',
    'Recommender',
    'MLLMRec',
    'LightGCN',
    'BPRMF',
    'VBPR',
    'build_model',
    'item_graph_propagation',
    'bpr_loss',
    'embedding_norm_loss',
]
