r"""The experiment layer: one config source, one runner, stages that skip
finished work.

* :mod:`~mllmrec_pyg.experiment.config`: the typed, layered
  :class:`ExperimentConfig` (sections ``dataset``, ``model``, ``graph``,
  ``train``, ``grid``; keys checked against the real signatures);
* :mod:`~mllmrec_pyg.experiment.recipes`: dataset recipes by name;
* :mod:`~mllmrec_pyg.experiment.runner`: :func:`run_experiment`, a
  one-call experiment (as RecBole's ``run_recbole``, Cornac's
  ``Experiment``);
* :mod:`~mllmrec_pyg.experiment.pipeline`: :func:`run_pipeline`, the whole
  MLLMRec pipeline (describe -> prefer -> encode -> graph -> train ->
  evaluate -> report);
* :mod:`~mllmrec_pyg.experiment.store`: the content-keyed stage records;
* :mod:`~mllmrec_pyg.experiment.compare`: :func:`compare_runs`, runs side
  by side with paired t-tests;
* :mod:`~mllmrec_pyg.experiment.sweep`: :func:`run_sweep`, a sensitivity
  grid selected on validation, with its heat map or line plot.
"""
from .compare import Comparison, compare_runs
from .config import (
    SECTIONS,
    ExperimentConfig,
    parse_override,
    read_layer,
    resolve_config,
)
from .pipeline import BackendSpec, NoLLMPreferenceError, reason, run_pipeline
from .recipes import Recipe, available_recipes, find_recipe, load_recipe
from .runner import (
    ExperimentResult,
    build_config,
    load_experiment_data,
    prepare_experiment,
    run_experiment,
)
from .store import STAGES, StageStore, check_out_dir, content_key
from .sweep import SweepResult, run_sweep

__all__ = [
    'SweepResult',
    'run_sweep',
    'SECTIONS',
    'STAGES',
    'BackendSpec',
    'Comparison',
    'ExperimentConfig',
    'ExperimentResult',
    'NoLLMPreferenceError',
    'Recipe',
    'StageStore',
    'available_recipes',
    'build_config',
    'check_out_dir',
    'compare_runs',
    'content_key',
    'find_recipe',
    'load_experiment_data',
    'load_recipe',
    'parse_override',
    'prepare_experiment',
    'read_layer',
    'reason',
    'resolve_config',
    'run_experiment',
    'run_pipeline',
]
