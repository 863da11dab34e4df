r"""Dataset recipes: a config layer per dataset (its domain, split and the
paper's hyper-parameters), looked up by the dataset's NAME.

A recipe is a JSON file with a ``name`` and the sections of
:mod:`mllmrec_pyg.experiment.config`; the shipped ones live in the
project's ``datasets/`` folder, and folders listed in
:obj:`$MLLMREC_RECIPES` (separated by :obj:`os.pathsep`) are searched
first.  :func:`find_recipe` matches a recipe name exactly (``--recipe
amazon-sports``), or the basename of a dataset folder that equals a
recipe name (``../shared/data/amazon-sports``); a folder called
``my-data`` matches nothing and gets the defaults, never the settings of
a recipe whose name happens to be a substring of its path.
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .config import read_layer

#: The project's shipped recipes (a source checkout or editable install).
SHIPPED = pathlib.Path(__file__).resolve().parents[2] / 'datasets'


def recipe_dirs() -> List[pathlib.Path]:
    r"""The folders searched for recipes, first match wins:
    :obj:`$MLLMREC_RECIPES`, then the shipped ``datasets/``."""
    extra = [pathlib.Path(p) for p in os.environ.get('MLLMREC_RECIPES', '').split(os.pathsep)
             if p]
    return [d for d in [*extra, SHIPPED] if d.is_dir()]


@dataclass
class Recipe:
    r"""A dataset recipe.

    Attributes:
        name (str): The dataset name it applies to.
        path (str): The recipe file.
        layer (Dict[str, Any]): Its config sections.
    """
    name: str
    path: str
    layer: Dict[str, Any]

    def dataset_path(self) -> Optional[str]:
        r"""The recipe's ``dataset.path``, relative paths taken from the
        current folder where they exist there, else from the project root
        (the folder above ``datasets/``)."""
        path = self.layer.get('dataset', {}).get('path')
        if not path or os.path.isabs(path) or os.path.exists(path):
            return path
        beside = pathlib.Path(self.path).resolve().parent.parent / path
        return str(beside) if beside.exists() else path

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name}, {self.path})'


def load_recipe(path: str) -> Recipe:
    r"""Reads the recipe file :obj:`path`."""
    layer = read_layer(path)
    name = layer.get('_meta', {}).get('name') or pathlib.Path(path).stem
    return Recipe(name=str(name), path=str(path), layer=layer)


def available_recipes() -> Dict[str, Recipe]:
    r"""Every recipe found, by name (earlier folders win)."""
    found: Dict[str, Recipe] = {}
    for folder in recipe_dirs():
        for file in sorted(folder.glob('*.json')):
            recipe = load_recipe(str(file))
            found.setdefault(recipe.name, recipe)
    return found


def find_recipe(name: Optional[str] = None, dataset_path: Optional[str] = None
                ) -> Optional[Recipe]:
    r"""The recipe named :obj:`name` (a recipe name or a recipe file), else
    the one whose name equals the basename of :obj:`dataset_path`, else
    :obj:`None`.

    Raises:
        ValueError: If :obj:`name` is given and no recipe has it.
    """
    if name is not None:
        if name.endswith(('.json', '.yaml', '.yml')) or os.sep in name:
            return load_recipe(name)
        recipes = available_recipes()
        if name not in recipes:
            import difflib
            close = difflib.get_close_matches(name, list(recipes), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ''
            raise ValueError(f"--recipe: unknown recipe '{name}' ({hint}recipes: "
                             f"{', '.join(sorted(recipes)) or 'none found'}; "
                             'or pass a recipe file)')
        return recipes[name]
    if dataset_path is None:
        return None
    base = os.path.basename(os.path.normpath(dataset_path.split(':', 1)[0]))
    return available_recipes().get(base)
