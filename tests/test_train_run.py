"""Training runs on CPU with the tiny thinkers: SFT then DPO, checkpoints, logs, resume, idempotence, self-sampling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import _train_data as td
from recipes.schema import load_recipe
from train.__main__ import main
from train.callbacks import read_log
from train.pipeline import run_recipe
from train.runtime import TrainingSetupError

MEDIA = "media: {fps: 1, max_frames: 4, max_pixels: 6272}\n"


@pytest.fixture(scope="module")
def data_dir(synth_dir, tmp_path_factory):
    """Built-format datasets over the synthetic clips: sft/, dpo/ (both conditions) and easy/ (shifted only)."""
    root = tmp_path_factory.mktemp("train_data")
    td.save(td.sft_records(synth_dir), root / "sft")
    td.save(td.dpo_records(synth_dir), root / "dpo")
    td.save(td.dpo_records(synth_dir, easy=True), root / "easy" / "dpo")
    return root


def _train_logs(stage_dir: Path) -> list[dict]:
    return [r for r in read_log(stage_dir) if "loss" in r]


@pytest.fixture(scope="module")
def two_stage(tiny_backbones, data_dir, tmp_path_factory):
    """`python -m train` on a recipe with an SFT stage then a DPO stage (3 steps each, checkpoints every 2)."""
    folder = tmp_path_factory.mktemp("two_stage")
    recipe = td.write_recipe(folder, "twostage", f"""
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
{MEDIA}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 3, learning_rate: 1.0e-3, batch_size: 2, save_steps: 2}}
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 3, learning_rate: 1.0e-3, batch_size: 2, save_steps: 2,
        beta: 0.1, loss_type: [sigmoid], lr_scheduler: constant}}
""")
    runs = folder / "runs"
    assert main([str(recipe), "--runs", str(runs), "--data", str(data_dir)]) == 0
    return recipe, runs / "twostage", data_dir


def test_both_stages_write_evaluable_checkpoints(two_stage, tiny_backbones):
    recipe_path, run, _ = two_stage
    recipe = load_recipe(recipe_path)
    for stage in ("sft", "dpo"):
        names = sorted(p.name for p in (run / stage).glob("checkpoint-*"))
        assert names == ["checkpoint-2", "checkpoint-3"], "every save_steps and at the last step"
        for ckpt in (run / stage).glob("checkpoint-*"):
            for f in ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "optimizer.pt",
                      "tokenizer.json", "processor_config.json", "recipe.yaml"):
                assert (ckpt / f).is_file(), f"{ckpt.name} lacks {f}"
            assert load_recipe(ckpt / "recipe.yaml").hash() == recipe.hash()
        result = json.loads((run / stage / "stage.json").read_text())
        assert result["final_step"] == 3 and Path(result["weights"]).is_dir()
    # The SFT adapter sits on the backbone; the DPO adapter on the SFT-warmed, merged weights (its reference).
    sft_base = json.loads((run / "sft/checkpoint-3/adapter_config.json").read_text())["base_model_name_or_path"]
    dpo_base = json.loads((run / "dpo/checkpoint-3/adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(sft_base) == Path(tiny_backbones["tiny-qwen2.5-omni"]).resolve()
    assert Path(dpo_base) == (run / "sft/merged").resolve()
    warmed = load_file(run / "sft/merged/model.safetensors")
    raw = load_file(Path(tiny_backbones["tiny-qwen2.5-omni"]) / "model.safetensors")
    changed = {k for k in raw if not torch.equal(raw[k], warmed[k])}
    # Saved in the release layout (language model under `model.layers`): LoRA changed exactly its projections,
    # and the audio and vision towers stayed frozen.
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert changed == {k for k in raw if k.startswith("model.layers.") and k.split(".")[-2] in projections
                       and k.endswith(".weight")}
    assert (run / "dpo/merged/model.safetensors").is_file()  # export_merged (default) for the last stage


def test_first_dpo_step_has_zero_margin_and_loss_ln2(two_stage):
    _, run, _ = two_stage
    first = _train_logs(run / "dpo")[0]
    assert first["step"] == 1
    assert abs(first["rewards/margins"]) < 1e-6
    assert abs(first["rewards/chosen"]) < 1e-6 and abs(first["rewards/rejected"]) < 1e-6
    assert abs(first["loss"] - math.log(2)) < 0.01
    assert first["logps/chosen"] < 0 and first["logps/chosen"] != first["logps/rejected"]


def test_logs_are_written_as_jsonl_and_csv(two_stage):
    import csv

    _, run, _ = two_stage
    for stage in ("sft", "dpo"):
        logs = _train_logs(run / stage)
        assert [r["step"] for r in logs] == [1, 2, 3]
        assert all(math.isfinite(r["loss"]) and "learning_rate" in r for r in logs)
        rows = list(csv.DictReader((run / stage / "log.csv").open()))
        assert [int(r["step"]) for r in rows] == [1, 2, 3]
        assert float(rows[0]["loss"]) == pytest.approx(logs[0]["loss"])
    rows = list(csv.DictReader((run / "dpo/log.csv").open()))
    assert rows[0]["rewards/margins"] != "" and rows[0]["logps/rejected"] != ""


def test_rerun_skips_complete_stages(two_stage, capsys):
    recipe, run, data = two_stage
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main([str(recipe), "--runs", str(run.parent), "--data", str(data)]) == 0
    out = capsys.readouterr().err  # progress lines go through logging, to stderr
    assert "sft: complete at step 3, skipped" in out and "dpo: complete at step 3, skipped" in out
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_margin_grows_on_easy_pairs(tiny_backbones, data_dir, tmp_path):
    recipe = td.write_recipe(tmp_path, "easy", f"""
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
{MEDIA}
stages:
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 8, learning_rate: 1.0e-3, batch_size: 2, save_steps: 100,
        lr_scheduler: constant}}
""")
    run_recipe(load_recipe(recipe), runs_root=tmp_path / "runs", data_root=data_dir / "easy", log=lambda _: None)
    logs = _train_logs(tmp_path / "runs/easy/dpo")
    margins = [r["rewards/margins"] for r in logs]
    assert len(margins) == 8 and abs(margins[0]) < 1e-6
    assert sum(margins[-3:]) / 3 > 0.1, margins
    assert all(b > a for a, b in zip(margins, margins[1:])), margins
    assert logs[-1]["loss"] < math.log(2) - 0.05
    assert logs[-1]["rewards/accuracies"] == 1.0


class _Crash(Exception):
    pass


class _CrashAfterSave:
    """A TrainerCallback that kills the run right after checkpoint-``step`` is written."""

    def __init__(self, step: int):
        from transformers import TrainerCallback

        outer = self

        class _Cb(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == outer.step:
                    raise _Crash(f"killed after checkpoint-{outer.step}")

        self.step = step
        self.callback = _Cb()


def _resume_recipe(folder: Path, backbone: Path, lr: str = "1.0e-3") -> Path:
    folder.mkdir(exist_ok=True)
    return td.write_recipe(folder, "resume", f"""
backbone: {backbone}
{MEDIA}
stages:
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 4, learning_rate: {lr}, batch_size: 2, save_steps: 2,
        lr_scheduler: cosine, warmup_ratio: 0.25}}
""")


def test_killed_run_resumes_to_the_same_final_state(tiny_backbones, data_dir, tmp_path):
    backbone = tiny_backbones["tiny-qwen2.5-omni"]
    quiet = dict(data_root=data_dir, log=lambda _: None)
    whole = load_recipe(_resume_recipe(tmp_path / "a", backbone))
    run_recipe(whole, runs_root=tmp_path / "a/runs", **quiet)

    recipe = load_recipe(_resume_recipe(tmp_path / "b", backbone))
    with pytest.raises(_Crash):
        run_recipe(recipe, runs_root=tmp_path / "b/runs", callbacks=[_CrashAfterSave(2).callback], **quiet)
    stage_b = tmp_path / "b/runs/resume/dpo"
    assert (stage_b / "checkpoint-2/trainer_state.json").is_file() and not (stage_b / "stage.json").exists()
    assert not (stage_b / "checkpoint-4").exists()
    from transformers import TrainerCallback

    steps_run = []

    class _Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)

    # The same command again: resumes from checkpoint-2 and runs only steps 3 and 4.
    run_recipe(recipe, runs_root=tmp_path / "b/runs", callbacks=[_Count()], **quiet)
    assert steps_run == [3, 4]

    stage_a = tmp_path / "a/runs/resume/dpo"
    assert json.loads((stage_b / "stage.json").read_text())["final_step"] == 4
    wa = load_file(stage_a / "checkpoint-4/adapter_model.safetensors")
    wb = load_file(stage_b / "checkpoint-4/adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
    sa = json.loads((stage_a / "checkpoint-4/trainer_state.json").read_text())
    sb = json.loads((stage_b / "checkpoint-4/trainer_state.json").read_text())
    assert sa["global_step"] == sb["global_step"] == 4
    la, lb = _train_logs(stage_a), _train_logs(stage_b)
    assert [r["step"] for r in lb] == [1, 2, 3, 4], "no step logged twice after the resume"
    for ra, rb in zip(la, lb):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4, abs=1e-6)
        assert rb["learning_rate"] == pytest.approx(ra["learning_rate"])

    # A folder started with other settings is not silently mixed with new ones.
    changed = load_recipe(_resume_recipe(tmp_path / "b", backbone, lr="2.0e-3"))
    with pytest.raises(TrainingSetupError, match="other settings"):
        run_recipe(changed, runs_root=tmp_path / "b/runs", **quiet)


def test_self_sampled_pairs_reject_the_policys_wrong_answers(tiny_backbones, data_dir, tmp_path):
    recipe = td.write_recipe(tmp_path, "selfs", f"""
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
{MEDIA}
stages:
  dpo: {{kind: dpo, data: {{dataset: sft, limit: 4}}, self_sampled: {{max_new_tokens: 6, batch_size: 2}},
        max_steps: 1, learning_rate: 1.0e-3, batch_size: 2}}
""")
    run_recipe(load_recipe(recipe), runs_root=tmp_path / "runs", data_root=data_dir, log=lambda _: None)
    stage = tmp_path / "runs/selfs/dpo"
    judged = [json.loads(line) for line in (stage / "self_sampled.jsonl").read_text().splitlines()]
    assert len(judged) == 4
    from datasets import load_from_disk

    pairs = load_from_disk(str(stage / "self_sampled"))
    wrong = [j for j in judged if not j["agrees"]]
    assert len(pairs) == len(wrong) > 0  # a random tiny model does not answer "The audio is delayed."
    for row, j in zip(pairs, wrong):
        assert row["chosen"] == j["reference"] and row["rejected"] == j["answer"]
        assert row["source"] == "self_sampled" and Path(row["video"]).is_absolute()
    assert abs(_train_logs(stage)[0]["rewards/margins"]) < 1e-6


def test_qwen3_omni_first_dpo_step(tiny_backbones, data_dir, tmp_path):
    recipe = td.write_recipe(tmp_path, "q3", f"""
backbone: {tiny_backbones['tiny-qwen3-omni']}
{MEDIA}
lora: {{dropout: 0}}
stages:
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 1, learning_rate: 1.0e-3, batch_size: 2}}
""")
    run_recipe(load_recipe(recipe), runs_root=tmp_path / "runs", data_root=data_dir, log=lambda _: None)
    first = _train_logs(tmp_path / "runs/q3/dpo")[0]
    assert abs(first["rewards/margins"]) < 1e-6
    # The MoE router's load-balancing term (coefficient from the config) sits on top of ln 2.
    assert abs(first["loss"] - math.log(2)) < 0.01


def test_unknown_key_and_missing_data_exit_2(tiny_backbones, tmp_path, capsys):
    recipe = td.write_recipe(tmp_path, "nodata", f"""
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 1, learning_rate: 1.0e-3}}
""")
    assert main([str(recipe), "--set", "stages.sft.lr=1"]) == 2
    assert "stages.sft.lr" in capsys.readouterr().err
    assert main([str(recipe), "--runs", str(tmp_path / "runs"), "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "stages.sft.data" in err and "python -m data_builders build" in err


def test_adapter_checkpoint_loads_the_way_eval_loads_it(two_stage, synth_dir):
    """base_model_name_or_path + adapter (what `python -m eval run --checkpoint` reads) == the merged export."""
    from peft import PeftModel

    from recipes import MediaSettings
    from train.backbones import load_backbone
    from train.collators import SFTCollator
    from train.inputs import forward_kwargs

    _, run, _ = two_stage
    ckpt = run / "dpo/checkpoint-3"
    base = json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
    model, _ = load_backbone(base)
    policy = PeftModel.from_pretrained(model, str(ckpt)).eval()
    merged, processor = load_backbone(str(run / "dpo/merged"))
    media = MediaSettings(fps=1, max_frames=4, max_pixels=6272)
    batch = SFTCollator(processor, media)([td.sft_records(synth_dir)[1].model_dump(mode="json")])
    batch.pop("labels")
    flag = batch.pop("use_audio_in_video")
    assert flag == forward_kwargs(media, True)["use_audio_in_video"]
    with torch.no_grad():
        a = policy(**batch, use_audio_in_video=flag).logits
        b = merged.eval()(**batch, use_audio_in_video=flag).logits
        with policy.disable_adapter():
            c = policy(**batch, use_audio_in_video=flag).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(a, c), "the DPO adapter changed the policy"


def test_full_fine_tuning_with_checkpointing_chains_weights(tiny_backbones, data_dir, tmp_path):
    recipe = td.write_recipe(tmp_path, "full", f"""
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
{MEDIA}
lora: {{enabled: false, towers: [language_model]}}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 2, learning_rate: 1.0e-4, batch_size: 2,
        gradient_checkpointing: true}}
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 1, learning_rate: 1.0e-4, batch_size: 2,
        gradient_checkpointing: true}}
""")
    results = run_recipe(load_recipe(recipe), runs_root=tmp_path / "runs", data_root=data_dir, log=lambda _: None)
    sft_ckpt = tmp_path / "runs/full/sft/checkpoint-2"
    assert (sft_ckpt / "model.safetensors").is_file() and not (sft_ckpt / "adapter_config.json").exists()
    assert results[1].base == str(sft_ckpt.resolve()), "DPO starts from the SFT weights"
    warmed = load_file(sft_ckpt / "model.safetensors")
    raw = load_file(Path(tiny_backbones["tiny-qwen2.5-omni"]) / "model.safetensors")
    changed = {k.split(".")[0] for k in raw if not torch.equal(raw[k], warmed[k])}
    assert "model" in changed and not changed & {"audio_tower", "visual"}, "towers outside lora.towers stay frozen"
    first = _train_logs(tmp_path / "runs/full/dpo")[0]
    assert abs(first["rewards/margins"]) < 1e-6 and abs(first["loss"] - math.log(2)) < 0.01
