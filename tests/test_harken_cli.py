"""The `harken` command: dispatch to the module mains, recipe listing/showing/schema, the committed recipe reference,
the trainer block against TRL's real config classes, the dry run, and the run report's curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from _train_data import write_recipe
from recipes import RecipeError, load_recipe
from recipes.harken import DISPATCH, main, recipe_summary
from recipes.schema import RECIPES_DIR

REPO = Path(__file__).resolve().parent.parent
STAGES = """
stages:
  sft: {kind: sft, data: {dataset: sft}, max_steps: 2, learning_rate: 1.0e-3}
  dpo: {kind: dpo, data: {dataset: dpo}, max_steps: 2, learning_rate: 1.0e-3}
"""


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert '[project.scripts]\nharken = "recipes.harken:main"' in text


@pytest.mark.parametrize("command", sorted(DISPATCH))
def test_dispatch_reaches_each_module_main(command, monkeypatch):
    import importlib

    module, prefix, _ = DISPATCH[command]
    seen = []
    monkeypatch.setattr(importlib.import_module(module), "main", lambda argv: seen.append(argv) or 7)
    assert main([command, "x", "--flag"]) == 7
    assert seen == [[*prefix, "x", "--flag"]]


def test_eval_subcommands_come_from_the_eval_module(capsys):
    with pytest.raises(SystemExit) as done:
        main(["eval", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for sub in ("run", "watch", "metrics"):
        assert sub in out


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as done:
        main(["trian"])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_recipes_lists_every_recipe_with_its_header(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out]
    assert names == sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    demo = next(line for line in out if line.startswith("demo "))
    assert demo.split(None, 1)[1] == recipe_summary(RECIPES_DIR / "demo.yaml")
    assert recipe_summary(RECIPES_DIR / "demo.yaml").startswith("The whole pipeline on the offline defaults")


def test_recipe_summary_prefers_the_description_field(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("# Run: harken train r\n# Header line.\ndescription: From the field. More.\n")
    assert recipe_summary(f) == "From the field."


def test_recipe_show_resolves_extends_and_set(capsys):
    assert main(["recipe", "show", "dpo_ctp", "--set", "stages.dpo.beta=0.3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    base = load_recipe("ours10k")
    assert shown["name"] == "dpo_ctp" and shown["stages"]["dpo"]["beta"] == 0.3
    assert shown["data"]["dpo"]["ctp"] == 10000 and shown["backbone"] == base.backbone  # inherited from ours10k
    assert shown["media"] == base.media.model_dump(mode="json")


def test_recipe_schema_lists_every_key_with_type_default_and_hf_name(capsys):
    assert main(["recipe", "schema"]) == 0
    out = capsys.readouterr().out
    assert "media.fps: float = 2.0  frames sampled per second of video" in out
    assert "stages.<name>.batch_size: int = 1" in out and "[Hugging Face: per_device_train_batch_size]" in out
    assert "data.shift.bands:" in out and "stages.<name>.trainer: mapping str -> any = {}" in out


def test_committed_recipe_reference_is_up_to_date():
    from recipes.reference import markdown_reference

    committed = (REPO / "docs" / "recipes.md").read_text(encoding="utf-8")
    assert committed == markdown_reference(), "regenerate: harken recipe schema --markdown > docs/recipes.md"


def test_every_hf_name_in_the_schema_is_a_real_trl_field():
    from recipes.trainer_block import config_fields, harken_keys

    fields = set(config_fields("dpo"))
    assert set(harken_keys()) <= fields, set(harken_keys()) - fields


def _ctx(recipe, tmp_path, name):
    from train.runtime import StageContext

    return StageContext(recipe=recipe, name=name, stage=recipe.stages[name], out_dir=tmp_path / name, base="b",
                        base_ref="b", data_root=tmp_path, is_last=True)


def test_trainer_block_reaches_the_real_trl_configs(tmp_path):
    from trl import SFTConfig

    from train.dpo import dpo_config
    from train.runtime import report_targets, trainer_kwargs

    body = STAGES.replace("learning_rate: 1.0e-3}\n  dpo", "learning_rate: 1.0e-3, trainer: {optim: adafactor, "
                          "ddp_timeout: 7200}}\n  dpo")
    body = body.replace("max_steps: 2, learning_rate: 1.0e-3}\n", "max_steps: 2, learning_rate: 1.0e-3, "
                        "warmup_ratio: 0.25, trainer: {use_weighting: true, "
                        "average_tokens_across_devices: false}}\n")
    recipe = load_recipe(write_recipe(tmp_path, "ok", body))
    sft = SFTConfig(**trainer_kwargs(_ctx(recipe, tmp_path, "sft"), report_targets(recipe)))
    assert sft.optim == "adafactor" and sft.ddp_timeout == 7200
    dpo = dpo_config(_ctx(recipe, tmp_path, "dpo"))
    assert dpo.use_weighting is True and dpo.average_tokens_across_devices is False
    assert dpo.warmup_steps == 0.25 and dpo.get_warmup_steps(100) == 25  # the ratio, as transformers 5 reads it


@pytest.mark.parametrize("block, needle", [
    ("{optimm: adafactor}", "trainer.optimm: TRL's SFTConfig has no field 'optimm'"),
    ("{beta: 0.2}", "trainer.beta: TRL's SFTConfig has no field"),  # a DPO field on an SFT stage
    ("{per_device_train_batch_size: 4}", "set it with stages.<name>.batch_size"),
    ("{warmup_steps: 10}", "set it with stages.<name>.warmup_ratio"),
    ("{output_dir: /tmp/x}", "Harken sets this itself"),
    ("{ddp_timeout: soon}", "trainer.ddp_timeout:"),
])
def test_trainer_block_refuses_by_name(tmp_path, block, needle):
    body = STAGES.replace("learning_rate: 1.0e-3}\n  dpo", f"learning_rate: 1.0e-3, trainer: {block}}}\n  dpo")
    with pytest.raises(RecipeError) as err:
        load_recipe(write_recipe(tmp_path, "bad", body))
    assert needle in str(err.value) and "stages.sft.trainer" in str(err.value)


def test_report_to_trackers_and_missing_packages(tmp_path, monkeypatch):
    import importlib.util

    from train.runtime import TrainingSetupError, check_trackers, report_targets

    recipe = load_recipe(write_recipe(tmp_path, "ok", STAGES + "report_to: [tensorboard, mlflow]\n"))
    assert report_targets(recipe) == ["tensorboard", "mlflow"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("mlflow",) else real(n, *a))
    if real("tensorboard") is None and real("tensorboardX") is None:
        with pytest.raises(TrainingSetupError, match="report_to: tensorboard needs the tensorboard package"):
            check_trackers(recipe)
    else:
        with pytest.raises(TrainingSetupError, match="report_to: mlflow needs the mlflow package: pip install mlflow"):
            check_trackers(recipe)
    with pytest.raises(RecipeError, match="report_to"):
        load_recipe(write_recipe(tmp_path, "bad", STAGES + "report_to: [neptune]\n"))


def test_dry_run_reports_stages_counts_tokens_and_memory(tmp_path, tiny_backbones, capsys):
    from train.dry_run import ModelDims, estimate_memory, model_dims, sample_tokens

    recipe = load_recipe(write_recipe(tmp_path, "ok", STAGES + f"backbone: {tiny_backbones['tiny-qwen2.5-omni']}\n"
                                      "data: {synth: {clips: 4}, sft: {ctp: 6}, dpo: {ctp: 5}}\n"
                                      "media: {fps: 2.0, max_frames: 8, max_pixels: 25088, max_clip_seconds: 4}\n"))
    dims = model_dims(recipe)
    assert dims.family == "qwen2.5-omni" and dims.vision_factor == 28 and dims.params > 0
    tok = sample_tokens(recipe, dims)
    # 4 s at 2 fps: 8 frames in 4 temporal patches of 25088 / 28^2 = 32 merged tokens; 25 audio tokens per second
    assert (tok["frames"], tok["video"], tok["audio"]) == (8, 128, 100)
    assert main(["train", str(tmp_path / "ok.yaml"), "--dry-run", "--data", str(tmp_path / "nodata")]) == 0
    out = capsys.readouterr().out
    assert "stage sft (sft) from" in out and "6 samples, planned by data.sft" in out and "5 pairs" in out
    assert "steps: 2" in out and "estimated GPU memory per device" in out
    # published Qwen2.5-Omni-7B, LoRA r=16 on the language model: the 40.4M adapters LLaMA-Factory reports for
    # Qwen2.5-7B; ZeRO-3 shards the weights over the GPUs, ZeRO-2 does not
    big = load_recipe("ours10k_qwen25")  # the Qwen2.5-Omni-7B variant of the main recipe
    from train.dry_run import _published_dims, trainable_params

    pub = _published_dims("Qwen/Qwen2.5-Omni-7B", big)
    assert isinstance(pub, ModelDims) and round(trainable_params(big, pub) / 1e6, 1) == 40.4
    stage = big.stages["dpo"]
    z2 = estimate_memory(big, stage, pub, 4096, gpus=8)
    z3 = estimate_memory(big, stage.model_copy(update={"deepspeed": "deepspeed/zero3.json"}), pub, 4096, gpus=8)
    assert z2.parts["weights"] == pytest.approx(pub.params * 2) and z3.parts["weights"] == pytest.approx(
        pub.params * 2 / 8)


def _results(avg_gap: float, shift: float, spec: float) -> dict:
    dims = {"temporal_sync": shift, "audio_existence": 50.0, "sound_consistency": 25.0}
    return {"suites": {
        "thud": {"metrics": {"closed_set": {"avg_gap": {"value": avg_gap}, **{d: {"accuracy_intervened": v}
                                                                                for d, v in dims.items()}}}},
        "spectrogram_mcq": {"status": "ok", "conditions": {"phonemic/spectrogram": {"accuracy": spec, "n": 8}}}}}


def test_run_report_embeds_curves_against_steps_across_stages(tmp_path):
    from eval.curves import curve_series, global_steps
    from eval.report import write_run_report

    labels = ["base (step 0)", "sft/checkpoint-4", "sft/checkpoint-8", "dpo/checkpoint-3", "dpo/checkpoint-6"]
    steps, starts = global_steps(labels)
    assert steps == [0, 4, 8, 11, 14] and starts == [("sft", 0), ("dpo", 8)]
    entries = [(label, _results(-10.0 + i, 20.0 + 5 * i, 0.25 + 0.05 * i)) for i, label in enumerate(labels)]
    series = curve_series(entries)
    assert series["Thud Avg Gap"]["closed_set"] == [(0, -10.0), (4, -9.0), (8, -8.0), (11, -7.0), (14, -6.0)]
    assert series["Thud intervened accuracy %"]["Shift (closed_set)"][-1] == (14, 40.0)
    assert series["Spectrogram MCQ accuracy %"]["phonemic/spectrogram"][1] == (4, pytest.approx(30.0))
    report = write_run_report(tmp_path, entries).read_text()
    assert "![headline metrics against training step](figures/curves.png)" in report
    png = (tmp_path / "figures" / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_push_writes_a_model_card_with_the_evaluation_tables(tmp_path, capsys):
    from recipes.schema import dump_recipe
    from train.checkpoints import StageResult, write_result

    recipe = load_recipe("demo")
    run = tmp_path / "runs" / "demo"
    for i, (name, stage) in enumerate(recipe.active_stages()):
        ck = run / name / "checkpoint-8"
        (ck / "eval").mkdir(parents=True)
        dump_recipe(recipe, ck / "recipe.yaml")
        (ck / "eval" / "results.json").write_text(json.dumps(_results(-5.0 + i, 30.0, 0.5)))
        (run / name / "merged").mkdir()
        write_result(run / name, StageResult(stage=name, kind=stage.kind, fingerprint="f", final_step=8,
                                             checkpoint=str(ck), weights=str(run / name / "merged"), base="b"))
    (run / "eval" / "base").mkdir(parents=True)
    (run / "eval" / "base" / "results.json").write_text(json.dumps(_results(-20.0, 10.0, 0.25)))
    assert main(["push", str(run)]) == 2 and "--repo-id" in capsys.readouterr().err  # no silent push target
    assert main(["push", str(run), "--no-push"]) == 0
    card = (run / "dpo" / "merged" / "README.md").read_text()
    assert card.startswith("---\nbase_model: tiny-qwen2.5-omni\n")
    assert "| tiny-qwen2.5-omni (base) | — | — | 10.0 | — | 50.0 | — | 25.0 | -20.0 |" in card  # Sync, then Table 1
    assert "| dpo/checkpoint-8 | — | — | 30.0 | — | 50.0 | — | 25.0 | -4.0 |" in card
    assert "| dpo/checkpoint-8 | 50.0 |" in card  # spectrogram accuracy %


def test_startup_silences_third_party_deprecations_not_harkens(monkeypatch):
    import logging
    import warnings

    from recipes.quiet import quiet_startup

    monkeypatch.delenv("HARKEN_VERBOSE", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_startup()
        for module in ("transformers.training_args", "trl.trainer.dpo_trainer", "train.runtime"):
            warnings.warn_explicit("`x` is deprecated", FutureWarning, "f.py", 1, module=module)
        warnings.warn_explicit("real problem", UserWarning, "f.py", 1, module="transformers.modeling_utils")
    assert [(str(w.message), w.category) for w in caught] == [("`x` is deprecated", FutureWarning),
                                                              ("real problem", UserWarning)]
    assert caught[0].filename == "f.py"
    ds = logging.getLogger("DeepSpeed")
    assert not ds.filter(logging.LogRecord("DeepSpeed", logging.WARNING, "f", 1, "Setting accelerator", (), None))
    assert ds.filter(logging.LogRecord("DeepSpeed", logging.ERROR, "f", 1, "out of memory", (), None))
    cpu_ops = logging.getLogger("bitsandbytes.backends.cpu.ops")  # a module logger under a quietened package
    assert not cpu_ops.isEnabledFor(logging.WARNING) and cpu_ops.isEnabledFor(logging.ERROR)


def test_dry_run_follows_branches_and_counts_only_a_stages_sources(tmp_path, capsys):
    """A branch (``start_from``) starts from the stage it names, not the one before it, and a stage that picks
    sources of a build trains on those rows only: the dry run must say so, or its steps and bases mislead."""
    recipe = load_recipe("clever_hans")
    assert main(["train", "clever_hans", "--dry-run", "--data", str(tmp_path / "nodata")]) == 0
    out = capsys.readouterr().out
    assert "stage control (dpo) from natural_sft's final weights" in out
    assert "stage dpo (dpo) from natural_sft's final weights" in out
    dpo = recipe.data.dpo
    assert f"{dpo['ctp'] + dpo['mute'] + dpo['swap']} pairs, planned by data.dpo" in out
    assert f"{dpo['orig_sync']} pairs, planned by data.dpo (not built yet), sources orig_sync" in out
