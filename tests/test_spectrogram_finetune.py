"""The finetuning recipe ``spectrogram_mcq_ft`` end to end on CPU with the tiny random Qwen2.5-VL: the data build
draws image SFT rows from the benchmark's train split, LoRA SFT runs its 5 epochs with a checkpoint per epoch, and
``eval watch`` scores every checkpoint on the test split under all conditions and ablations."""

from __future__ import annotations

import json

import pytest

from recipes.schema import RecipeError, load_recipe


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from data_builders.__main__ import main as data_main
    from eval.runner import watch
    from train.__main__ import main as train_main
    from train.vlm import build_tiny_vlm

    root = tmp_path_factory.mktemp("smcq_ft")
    vlm = build_tiny_vlm(out_dir=root / "tiny-vlm")
    data, runs = root / "data", root / "runs"
    # 16 words: 12 train items (48 rows = each under the 4 conditions), 4 test items; 6 steps per epoch.
    sets = [f"backbone={vlm}", "data.spectrogram_mcq.words=16", "data.sft.spectrogram_mcq=48",
            "stages.sft.batch_size=8", "stages.sft.save_steps=6", "stages.sft.learning_rate=5.0e-3",
            "stages.sft.logging_steps=1", f"eval.suites.spectrogram_mcq.options.items={data}/spectrogram_mcq/items.jsonl"]
    flags = [a for s in sets for a in ("--set", s)]
    assert data_main(["build", "recipes/spectrogram_mcq_ft_tiny.yaml", "--out", str(data), "--quiet", *flags]) == 0
    assert train_main(["recipes/spectrogram_mcq_ft_tiny.yaml", "--runs", str(runs), "--data", str(data), *flags]) == 0
    run = runs / "spectrogram_mcq_ft_tiny"
    watch(run, once=True, log=lambda _: None)
    return data, run


def test_every_recipe_of_the_benchmark_validates():
    real = load_recipe("spectrogram_mcq_ft")
    assert real.backbone.startswith("Qwen/Qwen2.5-VL") and real.stages["sft"].epochs == 5
    assert real.data.spectrogram_mcq.words == 4068 and real.lora.enabled
    tiny = load_recipe("spectrogram_mcq_ft_tiny")
    assert tiny.backbone == "tiny-qwen2.5-vl" and tiny.stages["sft"].epochs == 5


def test_image_rows_cannot_mix_with_clip_rows_or_be_preferences():
    with pytest.raises(RecipeError, match="cannot share one SFT set"):
        load_recipe("spectrogram_mcq_ft_tiny", ["data.sft.ctp=4", "data.synth.clips=4"])
    with pytest.raises(RecipeError, match="SFT samples only"):
        load_recipe("spectrogram_mcq_ft_tiny", ["data.dpo.spectrogram_mcq=4"])
    with pytest.raises(RecipeError, match="needs the spectrogram_mcq input"):
        load_recipe("demo", ["data.sft.spectrogram_mcq=4", "data.spectrogram_mcq=null"])


def test_sft_rows_come_from_the_train_split_only(finetuned):
    from datasets import load_from_disk

    from data_builders.spectrogram_mcq import read_items

    data, _ = finetuned
    rows = load_from_disk(str(data / "sft"))
    items = data / "spectrogram_mcq" / "items.jsonl"
    train = {it.id: it for it in read_items(items, "train")}
    test = {it.id for it in read_items(items, "test")}
    assert len(rows) == 48 and test and not test & {r["source_id"] for r in rows}
    # every train item under every condition once (48 = 12 x 4), answers are the right option's text
    assert {(r["source_id"], r["meta"]["condition"]) for r in rows} == {
        (i, f"{k}/{im}") for i in train for k in ("graphemic", "phonemic")
        for im in ("spectrogram", "spectrogram+waveform")}
    for r in rows:
        it = train[r["source_id"]]
        kind = r["meta"]["condition"].split("/")[0]
        assert r["answer"] == getattr(it.options, kind)[it.answer] and all(p.endswith(".png") for p in r["images"])
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["counts"]["train"]["sft"] == {"spectrogram_mcq": 48}
    assert manifest["spectrogram_mcq"]["items_per_split"] == {"test": 4, "train": 12}
    from data_builders.spectrogram_mcq import build_summary

    assert manifest["spectrogram_mcq"]["distractors"] == "groups"
    assert manifest["spectrogram_mcq"]["mean_distractor_ped"] == build_summary(read_items(items))["mean_distractor_ped"]


def test_lora_sft_trains_five_epochs_with_a_checkpoint_each(finetuned):
    from safetensors.torch import load_file

    from train.callbacks import read_log

    _, run = finetuned
    ckpts = sorted((run / "sft").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in ckpts] == [f"checkpoint-{6 * e}" for e in range(1, 6)]
    losses = [r["loss"] for r in read_log(run / "sft") if "loss" in r]
    assert len(losses) == 30 and sum(losses[-6:]) / 6 < sum(losses[:6]) / 6, "the answer loss goes down"
    first, last = (load_file(str(p / "adapter_model.safetensors")) for p in (ckpts[0], ckpts[-1]))
    assert any((first[k] - last[k]).abs().max() > 0 for k in first), "the adapter moved between epochs"


def test_every_checkpoint_is_evaluated_on_the_test_split(finetuned):
    _, run = finetuned
    conditions = {"graphemic/spectrogram", "graphemic/spectrogram+waveform", "phonemic/spectrogram",
                  "phonemic/spectrogram+waveform"}
    ablations = {"graphemic/blank", "phonemic/blank", "graphemic/none", "phonemic/none"}
    evaluated = [run / "eval" / "base", *sorted((run / "sft").glob("checkpoint-*/eval"))]
    assert len(evaluated) == 6
    for folder in evaluated:
        res = json.loads((folder / "results.json").read_text())["suites"]["spectrogram_mcq"]
        assert res["status"] == "ok" and res["settings"]["split"] == "test", folder
        assert set(res["conditions"]) == conditions and set(res["ablations"]) == ablations
        assert all(m["n"] == res["settings"]["n_items"] == 4 for m in [*res["conditions"].values(),
                                                                       *res["ablations"].values()])
    report = (run / "report.md").read_text()
    assert "## spectrogram_mcq" in report and report.count("| sft/checkpoint-") == 5 and "| base (step 0) |" in report


def test_run_report_plots_accuracy_against_epoch_with_reference_rows(finetuned):
    from eval.spectrogram_plots import checkpoint_epoch

    _, run = finetuned
    ckpts = sorted((run / "sft").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [checkpoint_epoch(str(p)) for p in ckpts] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert checkpoint_epoch("tiny-qwen2.5-vl") == 0.0
    report = (run / "report.md").read_text()
    assert "![accuracy against finetuning epoch](figures/spectrogram_mcq_epochs.png)" in report
    assert (run / "figures" / "spectrogram_mcq_epochs.png").stat().st_size > 10_000
    # the last checkpoint against chance, the published ASR and human figures, per condition
    row = next(line for line in report.split("### sft/checkpoint-30")[1].splitlines()
               if line.startswith("| graphemic/spectrogram |"))
    assert row.endswith("| 25 | 87.6 (published) | 75.0 (published) |") and "n=4)" in row


def test_an_omni_thinker_finetunes_on_the_same_image_rows(finetuned, tiny_backbones, tmp_path):
    """An omni thinker also finetunes on images: same rows, same collator, the Omni processor."""
    from train.__main__ import main as train_main
    from train.callbacks import read_log

    data, _ = finetuned
    sets = [f"backbone={tiny_backbones['tiny-qwen2.5-omni']}", "stages.sft.max_steps=2", "stages.sft.save_steps=2",
            "stages.sft.batch_size=4"]
    flags = [a for s in sets for a in ("--set", s)]
    assert train_main(["recipes/spectrogram_mcq_ft_tiny.yaml", "--runs", str(tmp_path), "--data", str(data),
                       *flags]) == 0
    stage = tmp_path / "spectrogram_mcq_ft_tiny" / "sft"
    assert (stage / "checkpoint-2" / "adapter_model.safetensors").is_file()
    losses = [r["loss"] for r in read_log(stage) if "loss" in r]
    assert losses and all(0 < v < 20 for v in losses)


def test_the_suite_reads_the_benchmark_the_recipe_builds():
    """Recipes name the benchmark once (data.spectrogram_mcq); eval finds it where the data builder writes it."""
    from eval.runner import suite_plan
    from recipes.paths import project_root

    REPO_ROOT = project_root()  # the rule: relative to the current directory (pytest runs from the repository)
    for name, folder in (("demo", "data/demo/spectrogram_mcq"), ("ours10k", "data/spectrogram_mcq"),
                         ("dpo_ctp", "data/spectrogram_mcq"),
                         ("spectrogram_mcq_ft_tiny", "data/spectrogram_mcq_ft_tiny/spectrogram_mcq")):
        recipe = load_recipe(name)
        items = suite_plan(recipe, data_root=REPO_ROOT / "data")["spectrogram_mcq"]["items"]
        assert items == str(REPO_ROOT / folder / "items.jsonl") == str(
            recipe.data.spectrogram_mcq.items_path(REPO_ROOT / "data" / name)), name
    explicit = suite_plan(load_recipe("demo"), sets=["spectrogram_mcq.items=/x/items.jsonl"])
    assert explicit["spectrogram_mcq"]["items"] == "/x/items.jsonl"


@pytest.mark.parametrize("family", ["tiny-llava-next", "tiny-internvl3"])
def test_other_vlm_families_finetune_and_evaluate(finetuned, family, tmp_path):
    """LLaVA-NeXT and InternVL 3 (tiny, built offline) run the same recipe: LoRA on their language model only, then
    the suite scores the adapter checkpoint on the test split under every condition."""
    from safetensors.torch import load_file

    from eval.runner import evaluate_checkpoint
    from train.__main__ import main as train_main
    from train.vlm import build_tiny_vlm

    data, _ = finetuned
    backbone = build_tiny_vlm(family, tmp_path / family)
    sets = [f"backbone={backbone}", "stages.sft.max_steps=2", "stages.sft.save_steps=2", "stages.sft.batch_size=4"]
    flags = [a for s in sets for a in ("--set", s)]
    assert train_main(["recipes/spectrogram_mcq_ft_tiny.yaml", "--runs", str(tmp_path / "runs"), "--data", str(data),
                       *flags]) == 0
    ckpt = tmp_path / "runs" / "spectrogram_mcq_ft_tiny" / "sft" / "checkpoint-2"
    adapted = {k.split(".lora_")[0] for k in load_file(str(ckpt / "adapter_model.safetensors"))}
    assert adapted and all(".language_model." in k for k in adapted), sorted(adapted)[:3]
    items = data / "spectrogram_mcq" / "items.jsonl"
    res = evaluate_checkpoint(ckpt, {"spectrogram_mcq": {"items": str(items)}}, tmp_path / "eval")
    suite = res["suites"]["spectrogram_mcq"]
    assert suite["status"] == "ok", suite
    assert len(suite["conditions"]) == 4 and all(m["n"] == 4 for m in suite["conditions"].values())
    # a tower this family does not have is refused with the parts it does have
    from train.backbones import load_backbone
    from train.runtime import TrainingSetupError, lora_config

    model, _ = load_backbone(str(backbone))
    with pytest.raises(TrainingSetupError, match="vision_tower"):
        lora_config(load_recipe("spectrogram_mcq_ft_tiny", ["lora.towers=[visual]"]), model)


def test_family_recipes_name_their_backbones():
    assert load_recipe("spectrogram_mcq_ft_llava_next").backbone.startswith("llava-hf/llava-v1.6")
    internvl = load_recipe("spectrogram_mcq_ft_internvl3")
    assert "InternVL3" in internvl.backbone and internvl.media.max_pixels == 4 * 448 * 448
