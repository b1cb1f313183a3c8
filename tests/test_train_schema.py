"""The training sections of a recipe: stages, LoRA/QLoRA, DeepSpeed, eval suites; bad ones refused by name."""

from __future__ import annotations

import pytest

from _train_data import write_recipe
from recipes import RecipeError, load_recipe
from recipes.schema import RECIPES_DIR

STAGES = """
stages:
  sft: {kind: sft, data: {dataset: sft}, max_steps: 2, learning_rate: 1.0e-3}
  dpo: {kind: dpo, data: {dataset: dpo}, max_steps: 2, learning_rate: 1.0e-3}
"""


def _refused(tmp_path, body: str, *needles: str, overrides=()):
    path = write_recipe(tmp_path, "bad", body)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, overrides)
    text = str(err.value)
    assert "bad.yaml" in text
    for needle in needles:
        assert needle in text, text
    return text


def test_stages_run_in_file_order_with_defaults(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "ok", STAGES))
    assert [n for n, _ in recipe.active_stages()] == ["sft", "dpo"]
    dpo = recipe.stages["dpo"]
    assert dpo.dpo_losses() == (["sigmoid"], [1.0])
    assert recipe.lora.enabled and not recipe.quantization.enabled


def test_unknown_stage_key_is_named(tmp_path):
    block = ("stages:\n  dpo:\n    kind: dpo\n    data: {dataset: dpo}\n    max_steps: 2\n    learning_rate: 1.0e-3\n"
             "    learning_rat: 3\n")
    _refused(tmp_path, block, "stages.dpo.learning_rat", "unknown key")
    _refused(tmp_path, STAGES, "stages.sft.betta", overrides=["stages.sft.betta=0.1"])
    _refused(tmp_path, STAGES + "lora: {rank: 8}\n", "lora.rank")


def test_dpo_stage_without_preference_data_is_refused(tmp_path):
    body = STAGES.replace("data: {dataset: dpo}", "data: {dataset: sft}")
    _refused(tmp_path, body, "stages.dpo", "preference pairs")


def test_self_sampled_dpo_reads_sft_prompts(tmp_path):
    body = STAGES.replace("data: {dataset: dpo}", "data: {dataset: sft}, self_sampled: {max_new_tokens: 8}")
    assert load_recipe(write_recipe(tmp_path, "ok", body)).stages["dpo"].self_sampled.max_new_tokens == 8
    body = STAGES.replace("data: {dataset: dpo}", "data: {dataset: dpo}, self_sampled: {}")
    _refused(tmp_path, body, "stages.dpo", "self_sampled")


def test_a_stage_reading_a_dataset_the_data_section_does_not_build_is_refused(tmp_path):
    data = "data: {synth: {clips: 4}, sft: {ctp: 8}}\n"
    _refused(tmp_path, STAGES + data, "stages.dpo.data", "data.dpo")
    ok = load_recipe(write_recipe(tmp_path, "ok", STAGES + data), ["stages.dpo.data.path=/elsewhere/dpo"])
    assert ok.stages["dpo"].data.path == "/elsewhere/dpo"


def test_self_sampled_with_zero3_is_refused(tmp_path):
    body = STAGES.replace("data: {dataset: dpo}", "data: {dataset: sft}, self_sampled: {}")
    _refused(tmp_path, body, "stages.dpo", "self_sampled", "zero2",
             overrides=["stages.dpo.deepspeed=deepspeed/zero3.json"])


def test_qlora_without_lora_is_refused(tmp_path):
    _refused(tmp_path, STAGES + "lora: {enabled: false}\nquantization: {enabled: true}\n", "quantization",
             "lora.enabled")


def test_zero3_with_4bit_is_refused_and_zero2_is_not(tmp_path):
    body = STAGES + "quantization: {enabled: true}\n"
    _refused(tmp_path, body, "stages.dpo.deepspeed", "ZeRO-3",
             overrides=["stages.dpo.deepspeed=deepspeed/zero3_offload.json"])
    ok = load_recipe(write_recipe(tmp_path, "ok", body), ["stages.dpo.deepspeed=deepspeed/zero2.json"])
    assert ok.stages["dpo"].zero_stage() == 2


def test_missing_deepspeed_file_is_refused(tmp_path):
    _refused(tmp_path, STAGES, "stages.dpo", "nope.json", overrides=["stages.dpo.deepspeed=deepspeed/nope.json"])


def test_loss_weights_must_match_loss_types(tmp_path):
    _refused(tmp_path, STAGES, "stages.dpo.loss_weights", "2 loss_weights for 1",
             overrides=["stages.dpo.loss_weights=[1.0, 0.5]"])
    _refused(tmp_path, STAGES, "stages.dpo.loss_type", overrides=["stages.dpo.loss_type=[sigmod]"])
    ok = load_recipe(write_recipe(tmp_path, "ok", STAGES),
                     ["stages.dpo.loss_type=[sigmoid, ipo]", "stages.dpo.loss_weights=[1.0, 0.5]",
                      "stages.dpo.sft_weight=0.2"])
    assert ok.stages["dpo"].dpo_losses() == (["sigmoid", "ipo", "sft"], [1.0, 0.5, 0.2])


def test_sft_mix_twice_is_refused(tmp_path):
    _refused(tmp_path, STAGES, "sft_weight", overrides=["stages.dpo.loss_type=[sigmoid, sft]",
                                                        "stages.dpo.sft_weight=0.2"])


def test_dpo_knobs_on_an_sft_stage_are_refused(tmp_path):
    _refused(tmp_path, STAGES, "stages.sft", "beta", overrides=["stages.sft.beta=0.1"])


def test_a_stage_needs_a_length(tmp_path):
    _refused(tmp_path, STAGES.replace("max_steps: 2, ", "", 1), "stages.sft", "epochs or max_steps")


def test_eval_suites_with_options(tmp_path):
    body = STAGES + "eval:\n  suites:\n    thud: {options: {modes: [closed_set], limit: 2}}\n    spectrogram_mcq: {}\n"
    recipe = load_recipe(write_recipe(tmp_path, "ok", body))
    assert list(recipe.eval.suites) == ["thud", "spectrogram_mcq"]
    assert recipe.eval.suites["thud"].options == {"modes": ["closed_set"], "limit": 2}
    _refused(tmp_path, body, "eval.suites", overrides=["eval.suites.Thud-2.enabled=true"])


def test_ablations_change_only_what_differs():
    base = load_recipe("ours10k")
    assert base.backbone == "Qwen/Qwen3-Omni-30B-A3B-Instruct" and base.precision == "bf16"
    assert [n for n, _ in base.active_stages()] == ["sft", "dpo"]
    assert all(s.zero_stage() == 3 for _, s in base.active_stages())  # 30B of MoE weights are sharded
    assert all(s.zero_stage() == 2 for _, s in load_recipe("ours10k_qwen25").active_stages())
    sft_mix = load_recipe("sft_mix")
    assert [n for n, _ in sft_mix.active_stages()] == ["sft"]
    assert sft_mix.stages["sft"] == base.stages["sft"]
    sampled = load_recipe("dpo_self_sampled")
    assert sampled.stages["dpo"].data.dataset == "sft" and sampled.stages["dpo"].self_sampled.enabled
    assert sampled.stages["dpo"].learning_rate == base.stages["dpo"].learning_rate  # inherited
    for name in ("dpo_orig_sync", "dpo_ctp", "dpo_ctp_fv", "dpo_ctp_fv_llava", "ours10k_mute_swap"):
        assert (RECIPES_DIR / f"{name}.yaml").read_text().count("\n") < 12, "ablations stay small"
        assert load_recipe(name).stages == base.stages


def test_every_deepspeed_config_is_json_with_a_zero_stage():
    import json

    stages = {}
    for path in sorted((RECIPES_DIR / "deepspeed").glob("*.json")):
        stages[path.stem] = json.loads(path.read_text())["zero_optimization"]["stage"]
    assert stages == {"zero2": 2, "zero2_offload": 2, "zero3": 3, "zero3_offload": 3}


def test_wandb_is_offline_without_a_key_and_off_when_disabled(tmp_path, monkeypatch):
    from train.runtime import report_targets

    recipe = load_recipe(write_recipe(tmp_path, "ok", STAGES + "wandb: {enabled: true, project: p}\n"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert report_targets(recipe) == ["none"]
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert report_targets(recipe) == ["wandb"]
    import os

    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_PROJECT"] == "p"
    monkeypatch.delenv("WANDB_MODE")
    assert report_targets(load_recipe(write_recipe(tmp_path, "off", STAGES))) == ["none"]
