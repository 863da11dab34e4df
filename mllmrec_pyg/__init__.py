r"""MLLMRec as a PyTorch Geometric library.

Stages flow one way: raw files -> :mod:`mllmrec_pyg.data` ->
:mod:`mllmrec_pyg.llm` (descriptions, preferences, text encoding) ->
:mod:`mllmrec_pyg.transforms` (refined item graph) -> :mod:`mllmrec_pyg.nn`
(models) -> :mod:`mllmrec_pyg.train` / :mod:`mllmrec_pyg.metrics`
(training and evaluation) -> reports.
"""

__version__ = '0.1.0'
