r"""Message-passing layers."""
from .lightgcn_conv import LightGCNConv

__all__ = ['LightGCNConv']
