r"""Seeding and deterministic execution."""
from __future__ import annotations

import os

import torch
import torch_geometric


def seed_everything(seed: int, deterministic: bool = False) -> None:
    r"""Seeds Python's, NumPy's and PyTorch's generators (all devices), and
    with :obj:`deterministic=True` asks PyTorch for deterministic kernels.

    Call it before building the model, so its initialisation is
    reproducible too.

    Args:
        seed (int): The seed.
        deterministic (bool): Also select deterministic algorithms
            (:func:`torch.use_deterministic_algorithms`, cuDNN deterministic,
            cuBLAS workspace); slower on GPUs. Operations without a
            deterministic implementation warn instead of failing.
            (default: :obj:`False`)
    """
    torch_geometric.seed_everything(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible reductions.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
