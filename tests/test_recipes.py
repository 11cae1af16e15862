"""Every full recipe is the paper's, field by field, or says where and why it is not."""
from __future__ import annotations

import inspect

import pytest

from mlcore.learner import Recipe
from mlcore.reference import PAPER_RECIPES, canonical_method
from mlcore.registry import learner_class, learners

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]


def recipe_value(cls, recipe: Recipe, field: str):
    """A Recipe field, or ``model.<key>``: the recipe's model config, else the learner's constructor default."""
    if not field.startswith("model."):
        return getattr(recipe, field)
    key = field.split(".", 1)[1]
    if key in recipe.model:
        return recipe.model[key]
    param = inspect.signature(cls.__init__).parameters.get(key)
    return None if param is None else param.default


def few_shot_methods():
    return [name for name in learners() if name not in ("scratch", "pretrained")]


@pytest.mark.parametrize("name", few_shot_methods())
def test_full_recipes_match_the_papers_or_declare_why_not(name):
    cls = learner_class(name)
    paper = PAPER_RECIPES.get(canonical_method(name))
    for ways, shots in SETTINGS:
        recipe = cls.recipe(ways, shots, "full")
        for field, why in recipe.deviations.items():
            assert isinstance(why, str) and len(why) > 20, f"{name}: deviation {field!r} needs a reason"
        if paper is None:
            assert "recipe" in recipe.deviations, (
                f"{name} has no published recipe in reference.PAPER_RECIPES; its recipe must say so in "
                "deviations['recipe']")
            continue
        want = paper.get((ways, shots), paper.get("any"))
        if want is None:
            continue  # the paper trains no model for this setting
        for field, value in want.items():
            got = recipe_value(cls, recipe, field)
            if got != value:
                assert field in recipe.deviations, (
                    f"{name} {ways}w{shots}s: {field} = {got!r}, the paper's is {value!r}; fix the recipe or "
                    f"declare the deviation")


def test_the_table_names_real_fields():
    fields = set(Recipe.__dataclass_fields__)
    for method, table in PAPER_RECIPES.items():
        for values in table.values():
            for field in values:
                assert field.startswith("model.") or field in fields, (method, field)


def test_a_cpu_budget_is_a_shorter_schedule_of_the_same_recipe():
    for name in ("reptile", "relationnet"):
        cls = learner_class(name)
        full, cpu = cls.recipe(5, 1, "full"), cls.recipe(5, 1, "cpu")
        assert cpu.steps < full.steps
        assert cpu.model == full.model and cpu.optimizer == full.optimizer and cpu.lr == full.lr
        assert cpu.val_split == "vinyals/val" and cpu.train_split == "vinyals/train"
