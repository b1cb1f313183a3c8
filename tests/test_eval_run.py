"""End to end on CPU: ``eval run`` on a tiny LoRA checkpoint over 2 synthetic clips (results.json, report.md,
PNG plots), a repeated run that makes no model call, and ``eval watch`` over a run folder (base as step 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.__main__ import main as eval_main
from recipes.schema import Recipe, dump_recipe

MEDIA = {"fps": 1, "max_frames": 4, "max_pixels": 28 * 28 * 8}


@pytest.fixture(scope="module")
def held_out(synth_dir, tmp_path_factory):
    rows = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()][:2]
    out = tmp_path_factory.mktemp("thud_e2e") / "test_clips.jsonl"
    for r in rows:
        r["split"], r["video"] = "test", str((synth_dir / r["video"]).resolve())
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _adapter_checkpoint(base: Path, folder: Path, recipe: Recipe) -> Path:
    """A checkpoint as the trainer writes it: LoRA adapter on a tiny base, processor, trainer state, recipe.yaml."""
    from peft import LoraConfig, get_peft_model

    from train.backbones import load_backbone

    model, processor = load_backbone(str(base))
    model.name_or_path = str(base)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "trainer_state.json").write_text("{}")
    dump_recipe(recipe, folder / "recipe.yaml")
    return folder


def _refuse_loading(monkeypatch) -> None:
    """Make loading any model or processor fail: what runs after this must be served from the prediction cache."""
    import train.backbones

    def refuse(*args, **kwargs):
        raise AssertionError("a fully cached evaluation loaded the checkpoint")

    monkeypatch.setattr(train.backbones, "load_backbone", refuse)


def test_eval_run_on_a_tiny_lora_checkpoint(tmp_path, tiny_backbones, held_out, capsys, monkeypatch):
    from eval.checkpoint import load_checkpoint

    base = tiny_backbones["tiny-qwen2.5-omni"]
    recipe = Recipe.model_validate({"name": "thud_e2e", "backbone": str(base), "media": MEDIA})
    ck = _adapter_checkpoint(base, tmp_path / "sft" / "checkpoint-2", recipe)
    loaded = load_checkpoint(ck)
    assert loaded.kind == "adapter" and loaded.media.max_frames == 4  # media settings from recipe.yaml
    out = tmp_path / "out"
    argv = ["run", "--checkpoint", str(ck), "--suites", "thud", "--out", str(out),
            "--set", f"thud.annotations={held_out}", "--set", "thud.max_new_tokens=6"]
    # A suite name that is not registered is refused before anything runs (a typo is not an empty evaluation).
    assert eval_main([*argv[:3], "--suites", "thud,nonexistent_suite", *argv[5:]]) == 2
    assert not out.exists()
    assert eval_main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res) == {"checkpoint", "settings", "suites"}
    thud = res["suites"]["thud"]
    assert thud["status"] == "ok" and thud["n_clips"] == 2 and thud["cache"]["hits"] == 0
    for mode in ("closed_set", "free_form"):
        m = thud["metrics"][mode]
        assert m["temporal_sync"]["n"] == 2 and m["audio_existence"]["n"] == 2 and m["sound_consistency"]["n"] == 2
    report = (out / "report.md").read_text()
    assert "| mode | Sync | Sync orig | Shift |" in report
    assert "every accuracy with its 95% interval" in report and "| Sync (class-balanced) |" in report
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(pngs) == 6 and all((out / "figures" / p).stat().st_size > 1000 for p in pngs)
    for p in pngs:
        assert f"figures/{p}" in report
    # `metrics thud` on the written predictions reproduces the suite's numbers from predictions alone.
    capsys.readouterr()
    assert eval_main(["metrics", "thud", thud["predictions"]["closed_set"]]) == 0
    assert json.loads(capsys.readouterr().out) == thud["metrics"]["closed_set"]
    # A repeated run costs nothing: every prediction is a cache hit, and the checkpoint is never loaded.
    _refuse_loading(monkeypatch)
    assert eval_main(argv) == 0
    again = json.loads((out / "results.json").read_text())["suites"]["thud"]
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] == thud["cache"]["misses"]
    assert again["metrics"] == thud["metrics"]


def test_watch_evaluates_each_checkpoint_once(tmp_path, tiny_backbones, held_out, monkeypatch):
    from eval.runner import watch

    base = tiny_backbones["tiny-qwen2.5-omni"]
    clips = [json.loads(line)["video"] for line in held_out.read_text().splitlines()]
    sync = tmp_path / "vggsoundsync.jsonl"  # the out-of-distribution set: {video, offset, band}
    sync.write_text("".join(json.dumps({"video": v, "offset": off, "band": b}) + "\n"
                            for v in clips for off, b in ((0.0, "none"), (-1.5, "large"))))
    recipe = Recipe.model_validate({"name": "thudwatch_x", "backbone": str(base), "media": MEDIA,
                                    "eval": {"suites": {"thud": {"options": {"annotations": str(held_out),
                                                                             "sync_set": str(sync),
                                                                             "modes": ["closed_set"]}}}}})
    run_dir = tmp_path / "runs" / "thudwatch_x"
    (run_dir / "dpo").mkdir(parents=True)
    _adapter_checkpoint(base, run_dir / "dpo" / "checkpoint-4", recipe)
    log: list[str] = []
    entries = watch(run_dir, once=True, log=log.append)
    assert [label for label, _ in entries] == ["base (step 0)", "dpo/checkpoint-4"]
    assert len(log) == 2
    assert (run_dir / "eval" / "base" / "results.json").is_file()
    assert (run_dir / "dpo" / "checkpoint-4" / "eval" / "report.md").is_file()
    report = (run_dir / "report.md").read_text()
    assert "| base (step 0) |" in report and "| dpo/checkpoint-4 |" in report
    assert "base (step 0) → dpo/checkpoint-4" in report
    assert "| checkpoint | none | large | all |" in report  # OOD sync set, per band
    res = json.loads((run_dir / "eval" / "base" / "results.json").read_text())
    assert res["suites"]["thud"]["sync_set"]["closed_set"]["large"]["n"] == 2
    log.clear()
    watch(run_dir, once=True, log=log.append)
    assert log == []  # once each: nothing is evaluated again
    # Results gone but every prediction cached: evaluated again from the cache alone, without loading the model.
    (run_dir / "eval" / "base" / "results.json").unlink()
    _refuse_loading(monkeypatch)
    log.clear()
    again = dict(watch(run_dir, once=True, log=log.append))
    assert len(log) == 1 and again["base (step 0)"]["suites"]["thud"]["cache"]["misses"] == 0
    assert again["base (step 0)"]["suites"]["thud"]["metrics"] == res["suites"]["thud"]["metrics"]


def test_load_checkpoint_plain_folder_and_tiny_name(tiny_backbones):
    from eval.checkpoint import load_checkpoint
    from recipes.media import MediaSettings

    folder = load_checkpoint(tiny_backbones["tiny-qwen3-omni"], recipe=Recipe.model_validate(
        {"name": "x", "media": MEDIA}))
    assert folder.kind == "folder" and folder.media.fps == 1  # no recipe.yaml: the given recipe's media block
    assert not folder.model.training
    plain = load_checkpoint(tiny_backbones["tiny-qwen3-omni"])
    assert plain.media == MediaSettings() and plain.fingerprint == folder.fingerprint
    with pytest.raises(FileNotFoundError):
        load_checkpoint("no-such-org/no-such-model-xyz")


def test_run_checkpoints_in_training_order(tmp_path):
    from eval.runner import run_checkpoints, suite_plan

    run = tmp_path / "r"
    for stage, steps in (("dpo", (4, 12)), ("sft", (8, 4)), ("other", (1,))):
        for step in steps:
            ck = run / stage / f"checkpoint-{step}"
            ck.mkdir(parents=True)
            (ck / "trainer_state.json").write_text("{}")
    (run / "sft" / "checkpoint-99").mkdir()  # being written: no trainer state yet
    stages = {"sft": {"kind": "sft", "data": {"dataset": "sft"}, "max_steps": 8, "learning_rate": 1e-3},
              "dpo": {"kind": "dpo", "data": {"dataset": "dpo"}, "max_steps": 8, "learning_rate": 1e-3}}
    recipe = Recipe.model_validate({"name": "r", "stages": stages,
                                    "eval": {"suites": {"thud": {"options": {"limit": 3}}, "off": {"enabled": False}}}})
    got = [f"{p.parent.name}/{p.name}" for p in run_checkpoints(run, recipe)]
    assert got == ["sft/checkpoint-4", "sft/checkpoint-8", "dpo/checkpoint-4", "dpo/checkpoint-12", "other/checkpoint-1"]
    last_only = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"every_checkpoint": False})})
    assert [p.name for p in run_checkpoints(run, last_only)] == ["checkpoint-8", "checkpoint-12", "checkpoint-1"]
    plan = suite_plan(recipe, None, ["thud.offsets=[1.0, -1.0]", "thud.judge.kind=openai"])
    # The shift margin comes from the recipe's data section, as training uses it.
    assert plan == {"thud": {"limit": 3, "offsets": [1.0, -1.0], "judge": {"kind": "openai"},
                             "margin": recipe.data.shift.margin}}
    assert list(suite_plan(recipe, ["spectrogram_mcq"])) == ["spectrogram_mcq"]
    with pytest.raises(ValueError):
        suite_plan(recipe, None, ["limit=3"])


def test_moved_run_resolves_dpo_adapter_base_inside_the_run(tmp_path):
    """A DPO adapter's base (the SFT-merged policy) is found in the moved run folder, never swapped for the
    un-warmed backbone; a base that is gone everywhere is an error."""
    import json as _json

    from eval.checkpoint import _adapter_base

    ckpt = tmp_path / "runs" / "x" / "dpo" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    gone = "/nonexistent/elsewhere/runs/x/sft/merged"
    (ckpt / "adapter_config.json").write_text(_json.dumps({"base_model_name_or_path": gone}))
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        _adapter_base(ckpt)
    (tmp_path / "runs" / "x" / "sft" / "merged").mkdir(parents=True)
    assert _adapter_base(ckpt) == str((tmp_path / "runs" / "x" / "sft" / "merged").resolve())
    (ckpt / "adapter_config.json").write_text(_json.dumps({"base_model_name_or_path": "tiny-qwen2.5-omni"}))
    assert _adapter_base(ckpt) == "tiny-qwen2.5-omni"
