"""Per-family training recipes, registered by name (``train.recipe``)."""
from raysys.train.recipes.base import RECIPES, Recipe, build_recipe

__all__ = ["RECIPES", "Recipe", "build_recipe"]
