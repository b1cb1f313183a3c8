"""The diagnostic suites end to end on the tiny Omni thinker, on CPU: ``eval run --suites
audio_mcq,caption_classification,hierarchy`` over the offline sound world with a tiny sentence-transformers model
built here, and the input conditions on Thud's closed set and the spectrogram benchmark's audio questions."""

from __future__ import annotations

import json

import pytest

from data_builders.sound_world import CLASSES, build_world
from eval.__main__ import main as eval_main

MEDIA = {"fps": 1, "max_frames": 4, "max_pixels": 28 * 28 * 8}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world") / "w", per_class=1, seed=0)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from eval.embedders import build_tiny_embedder

    return build_tiny_embedder(tmp_path_factory.mktemp("emb") / "tiny")


def _recipe(tmp_path, backbone, eval_yaml: str):
    from recipes.schema import Recipe, dump_recipe  # noqa: F401 (Recipe validates the media block)

    path = tmp_path / "diag.yaml"
    media = "".join(f"  {k}: {v}\n" for k, v in MEDIA.items())
    path.write_text(f"# python -m eval run --recipe THIS\nbackbone: {backbone}\nmedia:\n{media}eval:\n  suites:\n"
                    + eval_yaml)
    return path


def test_world_layout(world):
    labels = [json.loads(x) for x in (world / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == len(CLASSES) and all((world / r["file"]).is_file() for r in labels)
    assert labels[0]["labels"] == ["thud", "impact"]
    sets = json.loads((world / "label_sets.json").read_text())
    assert sets["in_distribution"] == ["thud", "knock", "clink", "clang"]
    for row in map(json.loads, (world / "audio_mcq.jsonl").read_text().splitlines()):
        assert row["answer"] in row["options"] and len(set(row["options"])) == 4
    import soundfile as sf

    y, sr = sf.read(world / labels[4]["file"])  # a spoken word
    assert sr == 16000 and len(y) == 32000 and abs(y).max() > 0.3


def test_eval_run_the_three_diagnostic_suites(tmp_path, tiny_backbones, world, embedder, monkeypatch):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"a": "thud", "b": "thump", "relation": "synonym"}\n'
                     '{"a": "clink", "b": "impact", "relation": "hypernym"}\n'
                     '{"a": "beep", "b": "human voice", "relation": "unrelated"}\n')
    recipe = _recipe(tmp_path, tiny_backbones["tiny-qwen2.5-omni"],
                     f"    audio_mcq: {{options: {{items: {world}/audio_mcq.jsonl, limit: 3, input_conditions: "
                     "{fragments: [{window: 1.0}]}}}\n"
                     f"    caption_classification: {{options: {{data: {world}, embedder: {embedder}, "
                     "max_new_tokens: 4}}\n"
                     f"    hierarchy: {{options: {{data: {world}, pairs: {pairs}}}}}\n")
    out = tmp_path / "out"
    argv = ["run", "--checkpoint", str(tiny_backbones["tiny-qwen2.5-omni"]), "--recipe", str(recipe),
            "--suites", "audio_mcq,caption_classification,hierarchy", "--out", str(out)]
    assert eval_main(argv) == 0
    res = json.loads((out / "results.json").read_text())["suites"]
    assert {s["status"] for s in res.values()} == {"ok"}
    mcq = res["audio_mcq"]
    cond = mcq["input_conditions"]
    assert mcq["accuracy"]["n"] == 3 and set(cond["accuracy"]) == {"full", "no_audio/omitted", "no_audio/silence"}
    assert cond["fragments"]["fragment/1s/1s/silence"]["windows_per_item"] == 2.0
    assert mcq["cache"]["misses"] == 3 * (1 + 2 + 2)
    # The tiny model's scores depend on what it hears: full audio and no audio give different log-probabilities.
    values = [v for x in (out / "cache" / "predictions.jsonl").read_text().splitlines()
              if isinstance(v := json.loads(x)["value"], dict)]  # predictions, not what the checkpoint takes
    mcq_scores = {tuple(v["logprob"]) for v in values[:mcq["cache"]["misses"]]}
    assert len(mcq_scores) > 3
    cap = res["caption_classification"]
    assert set(cap["label_sets"]) == {"in_distribution", "out_of_distribution"}
    assert cap["label_sets"]["in_distribution"]["n_clips"] == 4 and cap["label_sets"]["out_of_distribution"]["n_labels"] == 3
    for m in ("mAP", "macro_auc", "accuracy", "f1"):
        assert 0 <= cap["metrics"][f"in_distribution/{m}"] <= 1
    hier = res["hierarchy"]
    assert set(hier["accuracy"]) == {"synonym", "hypernym", "unrelated"}
    assert hier["accuracy"]["unrelated"]["audio"]["n"] == 2 and hier["accuracy"]["synonym"]["text"]["n"] == 1
    report = (out / "report.md").read_text()
    for heading in ("## audio_mcq", "### audio_mcq: text prior and audio reliance", "## caption_classification",
                    "| in_distribution |", "## hierarchy", "| synonym |"):
        assert heading in report, heading
    assert (out / "audio_mcq" / "figures" / "accuracy_vs_fragment_length.png").is_file()
    import train.backbones

    def refuse(*args, **kwargs):
        raise AssertionError("a fully cached evaluation loaded the checkpoint")

    monkeypatch.setattr(train.backbones, "load_backbone", refuse)
    assert eval_main(argv) == 0  # again: every prediction is a cache hit, and the checkpoint is never loaded
    again = json.loads((out / "results.json").read_text())["suites"]
    assert all(s["cache"]["misses"] == 0 for s in again.values())


def test_conditions_on_thud_closed_set(tmp_path, tiny_backbones, synth_dir):
    rows = [json.loads(x) for x in (synth_dir / "annotations.jsonl").read_text().splitlines()][:2]
    clips = tmp_path / "test_clips.jsonl"
    for r in rows:
        r["split"], r["video"] = "test", str((synth_dir / r["video"]).resolve())
    clips.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = _recipe(tmp_path, tiny_backbones["tiny-qwen2.5-omni"],
                     f"    thud: {{options: {{annotations: {clips}, limit: 1, modes: [closed_set], conditions: [mute], "
                     "input_conditions: {no_audio: [omitted, silence], fragments: [{window: 3.0, fill: cut}]}}}\n")
    out = tmp_path / "out"
    assert eval_main(["run", "--checkpoint", str(tiny_backbones["tiny-qwen2.5-omni"]), "--recipe", str(recipe),
                      "--suites", "thud", "--out", str(out)]) == 0
    thud = json.loads((out / "results.json").read_text())["suites"]["thud"]
    cond = thud["input_conditions"]
    # one clip: the original asks three dimensions, the muted version one
    assert cond["n_items"] == 4 and cond["accuracy"]["no_audio/silence"]["n"] == 4
    assert cond["fragments"]["fragment/3s/3s/cut"]["windows_per_item"] == 2.0
    assert "### thud: text prior and audio reliance" in (out / "report.md").read_text()


def test_conditions_on_spectrogram_audio_questions(tmp_path, tiny_backbones):
    from data_builders.spectrogram_mcq import build
    from eval.context import EvalContext, PredictionCache
    from eval.suites import get_suite
    from recipes.media import MediaSettings
    from train.backbones import load_backbone

    build(tmp_path / "smcq", words=40, seed=0, workers=1, progress=False)
    model, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    ctx = EvalContext(checkpoint=tmp_path, fingerprint="tiny", model=model, processor=processor,
                      media=MediaSettings(), out_dir=tmp_path, cache=PredictionCache(tmp_path / "cache.jsonl"),
                      options={"items": str(tmp_path / "smcq" / "items.jsonl"), "limit": 1,
                               "input_conditions": {"no_audio": ["omitted"], "fragments": [{"window": 0.25}]}})
    res = get_suite("spectrogram_mcq")(ctx)
    cond = res["input_conditions"]
    assert cond["n_items"] == 2  # one word, graphemic and phonemic options
    assert set(cond["accuracy"]) == {"full", "no_audio/omitted"}
    assert cond["fragments"]["fragment/0.25s/0.25s/silence"]["windows_per_item"] >= 2
