r"""Primitives shared across the stages of the package, each implemented
once: the CSR adjacency builder (:func:`sparse_adjacency`), the (user, item)
pair set with its binary-search membership test (:class:`PairSet`), and the
top-:math:`k` ranking with excluded items (:func:`topk_items`), and the
nearest existing ancestor of a path to be created
(:func:`existing_ancestor`) and whole-file writes (:func:`replace_file`,
:func:`write_json`, :func:`save_tensors`)."""
from .pairs import PairSet
from .paths import existing_ancestor, replace_file, save_tensors, write_json
from .ranking import topk_items
from .sparse import check_graph, sparse_adjacency

__all__ = [
    'PairSet',
    'check_graph',
    'existing_ancestor',
    'replace_file',
    'save_tensors',
    'sparse_adjacency',
    'topk_items',
    'write_json',
]
