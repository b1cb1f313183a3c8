"""Recipe schema: typed, validated-at-load configuration for data, training and evaluation."""

from recipes.media import MediaSettings
from recipes.schema import Recipe, RecipeError, load_recipe

__all__ = ["MediaSettings", "Recipe", "RecipeError", "load_recipe"]
