"""Every recipe in recipes/ loads and validates; bad keys are refused by name; extends and --set work."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipes import RecipeError, load_recipe
from recipes.schema import RECIPES_DIR

ALL_RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))


def test_there_are_recipes():
    assert any(p.stem == "demo" for p in ALL_RECIPES)


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: p.stem)
def test_every_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and ("make" in first or "python -m" in first), "recipes open with their command"


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("media:\n  fps: 2\n  frames_per_sec: 3\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(bad)
    assert "media.frames_per_sec" in str(err.value) and "bad.yaml" in str(err.value)


def test_wrong_type_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("media:\n  fps: fast\n")
    with pytest.raises(RecipeError, match="media.fps"):
        load_recipe(bad)


def test_extends_and_overrides(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {RECIPES_DIR / 'demo.yaml'}\nmedia:\n  fps: 1.0\n")
    recipe = load_recipe(child, overrides=["media.max_frames=6", "seed=7"])
    base = load_recipe("demo")
    assert recipe.name == "child" and recipe.media.fps == 1.0 and recipe.media.max_frames == 6 and recipe.seed == 7
    assert recipe.media.sample_rate == base.media.sample_rate  # inherited
    assert recipe.hash() != base.hash()
    with pytest.raises(RecipeError, match="media.nope"):
        load_recipe(child, overrides=["media.nope=1"])


DPO_ABLATIONS = ["dpo_ctp", "dpo_ctp_fv", "dpo_ctp_fv_llava", "dpo_orig_sync", "ours10k_mute_swap", "ours10k_qwen25"]


def test_ours10k_states_the_papers_design():
    from recipes.data import CLIP_SOURCES

    recipe = load_recipe("ours10k")
    assert recipe.backbone == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    warmup = {k for k, n in recipe.data.sft.items() if n > 0}
    assert warmup and warmup <= set(CLIP_SOURCES), "the SFT warm-up is intervention-derived only"
    assert sum(recipe.data.dpo.values()) == 10_000
    assert load_recipe("ours10k_qwen25").backbone == "Qwen/Qwen2.5-Omni-7B"


@pytest.mark.parametrize("name", DPO_ABLATIONS)
def test_dpo_ablations_share_the_budget_and_the_warmup(name):
    base, recipe = load_recipe("ours10k"), load_recipe(name)
    assert sum(recipe.data.dpo.values()) == 10_000, "every DPO ablation trains on 10,000 pairs"
    assert recipe.data.sft == base.data.sft and recipe.stages["sft"] == base.stages["sft"] or name == "ours10k_qwen25"
    assert recipe.stages["dpo"].learning_rate == base.stages["dpo"].learning_rate
    assert "Table 2" in (RECIPES_DIR / f"{name}.yaml").read_text() or name in ("ours10k_mute_swap", "ours10k_qwen25")


def test_dpo_ctp_fv_differs_from_ours10k_in_its_sources():
    assert {k for k, n in load_recipe("dpo_ctp_fv").data.dpo.items() if n} != {
        k for k, n in load_recipe("ours10k").data.dpo.items() if n}
