"""Caption scoring and hierarchy probes without a model: exact metric values, the data readers (CSV and JSONL,
bad records quarantined), a tiny sentence-transformers model built and loaded locally, and stand-in captioners and
scorers whose right answers are known."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from eval import caption_classification as cc
from eval import hierarchy, scoring
from eval.context import EvalContext, PredictionCache
from recipes.media import MediaSettings


def test_average_precision_and_auc_exact():
    s = np.array([0.9, 0.8, 0.7, 0.6])
    y = np.array([True, False, True, False])
    assert cc.average_precision(s, y) == pytest.approx((1 + 2 / 3) / 2)
    assert cc.roc_auc(s, y) == pytest.approx(0.75)
    tie = np.array([0.5, 0.5])
    assert cc.average_precision(tie, np.array([True, False])) == pytest.approx(0.5)
    assert cc.roc_auc(tie, np.array([True, False])) == pytest.approx(0.5)


def test_classification_metrics_exact():
    scores = np.array([[0.9, 0.1, 0.0],   # right (a)
                       [0.8, 0.7, 0.1],   # wrong: says a, is b
                       [0.1, 0.2, 0.9]])  # right (c)
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    m = cc.classification_metrics(scores, targets, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    # F1 per label: a: tp1 fp1 fn0 -> 2/3; b: tp0 fn1 -> 0; c: 1
    assert m["f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["ap_per_label"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0), "c": pytest.approx(1.0)}
    assert m["macro_auc"] == pytest.approx(1.0) and m["n_clips"] == 3


def test_labelled_folder_csv_with_quarantine(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,labels\na.wav,dog; bark\nmissing.wav,cat\na.wav,\n")
    clips, bad = cc.read_labelled(tmp_path)
    assert [c.labels for c in clips] == [("dog", "bark")]
    assert [b["record"].split("/")[-1] for b in bad] == ["labels.csv:3", "labels.csv:4"]
    assert "does not exist" in bad[0]["reason"] and "non-empty" in bad[1]["reason"]
    with pytest.raises(FileNotFoundError, match="labels.jsonl or labels.csv"):
        cc.read_labelled(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from eval.embedders import build_tiny_embedder

    return build_tiny_embedder(tmp_path_factory.mktemp("emb") / "tiny")


def test_tiny_embedder_loads_through_sentence_transformers(embedder):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(embedder), local_files_only=True)
    e = model.encode(["sound of thud", "sound of thud", "sound of speech"], normalize_embeddings=True)
    assert e.shape == (3, 32) and e[0] @ e[1] == pytest.approx(1.0) and e[0] @ e[2] < 0.9999
    assert "thud" in " ".join(model.tokenizer.tokenize("thud")).replace("##", "").replace(" ", "")


def test_loading_the_embedder_does_not_import_wandb(embedder):
    """In a fresh process (as `eval run` is), loading the embedder leaves wandb unimported, though timm (when
    installed) would import it through sentence-transformers; wandb still imports normally afterwards."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            "from eval.embedders import load_embedder\n"
            "e = load_embedder(sys.argv[1]).encode(['sound of thud'])\n"
            "print(e.shape, 'wandb' in sys.modules)\n"
            "import wandb\n"
            "print(callable(wandb.init))\n")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code, str(embedder)], capture_output=True, text=True, cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["(1, 32) False", "True"]


class _Processor:
    feature_extractor = object()  # takes audio


def _ctx(tmp_path, options):
    return EvalContext(checkpoint=tmp_path, fingerprint="fp", model=None, processor=_Processor(),
                       media=MediaSettings(), out_dir=tmp_path, cache=PredictionCache(tmp_path / "c.jsonl"),
                       options=options)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from data_builders.sound_world import build_world

    return build_world(tmp_path_factory.mktemp("world") / "w", per_class=1, seed=0)


def test_a_captioner_that_names_the_class_scores_perfectly(tmp_path, world, embedder, monkeypatch):
    """A caption that says the label gives the label's own embedding: cosine 1, the top score of every clip."""
    from train import inputs

    classes = [json.loads(x)["labels"][0] for x in (world / "labels.jsonl").read_text().splitlines()]
    seen, batches = [], []

    def caption(model, processor, media, prompts, videos=None, audios=None, max_new_tokens=24, temperature=0.0):
        assert videos is None and len(prompts) == len(audios)  # the world's clips are audio files
        batches.append(len(audios))
        seen.extend(a.size for a in audios)
        return classes[len(seen) - len(audios):len(seen)]  # clips are captioned in file order
    monkeypatch.setattr(inputs, "generate_texts", caption)
    res = cc.run(_ctx(tmp_path, {"data": str(world), "embedder": str(embedder), "batch_size": 3}))
    assert len(seen) == 7 and set(seen) == {32000} and batches == [3, 3, 1]
    for name in ("in_distribution", "out_of_distribution"):
        m = res["label_sets"][name]
        assert m["accuracy"] == 1.0 and m["mAP"] == pytest.approx(1.0) and m["f1"] == 1.0, name
    rows = [json.loads(x) for x in (tmp_path / "caption_classification" / "captions.jsonl").read_text().splitlines()]
    assert rows[0] == {"file": "sounds/thud_0.wav", "labels": ["thud", "impact"], "caption": "thud"}


def test_the_embedder_loads_once_for_every_checkpoint(tmp_path, world, embedder, monkeypatch):
    """`eval watch` captions several checkpoints in one process: the embedder is loaded for the first and reused
    (a folder rewritten since is loaded again)."""
    import sentence_transformers

    from eval import embedders
    from train import inputs

    loads = []

    class Counting(sentence_transformers.SentenceTransformer):
        def __init__(self, *args, **kwargs):
            loads.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Counting)
    monkeypatch.setattr(embedders, "_LOADED", {})
    monkeypatch.setattr(inputs, "generate_texts", lambda *a, audios=(), **k: ["a thud"] * len(audios))
    results = []
    for checkpoint in ("checkpoint-4", "checkpoint-8"):
        ctx = _ctx(tmp_path / checkpoint, {"data": str(world), "embedder": str(embedder)})
        ctx.fingerprint = checkpoint
        results.append(cc.run(ctx)["metrics"])
    assert loads == [str(embedder)] and results[0] == results[1]
    assert embedders.load_embedder(str(embedder)) is embedders.load_embedder(str(embedder))
    config = embedder / "config.json"  # rewritten in place: same size, a later modification time
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    embedders.load_embedder(str(embedder))
    assert loads == [str(embedder)] * 2


def test_caption_suite_needs_an_embedder(tmp_path):
    with pytest.raises(ValueError, match="embedder=MODEL"):
        cc.run(_ctx(tmp_path, {}))


def test_hierarchy_probes_with_a_yes_sayer(tmp_path, world, monkeypatch):
    """A scorer that always says yes: right on every synonym and hypernym probe, wrong on every unrelated one;
    the audio probe hears both clips with the gap between them. With one clip per class a synonym has no second
    clip to be heard as, so its audio probe is skipped with the reason."""
    heard = []

    def yes(model, processor, media, prompt, options, frames=None, audio=None, image=None, shared=None):
        heard.append((prompt, None if audio is None else audio.size))
        return scoring.OptionScores((0.0, -1.0), (1, 1))

    monkeypatch.setattr(scoring, "score_options", yes)
    res = hierarchy.run(_ctx(tmp_path, {"data": str(world)}))
    acc = res["accuracy"]
    for probe in ("text", "mixed"):
        assert acc["synonym"][probe] == {"accuracy": 1.0, "n": 7, "ci95": pytest.approx([0.646, 1.0], abs=1e-3)}
    for probe in ("text", "mixed", "audio"):
        # heard hypernyms: only the four impacts have another clip of their broader kind (the other three classes
        # are the only carriers of their hypernym label)
        assert acc["hypernym"][probe] == {"accuracy": 1.0, "n": 4 if probe == "audio" else 7, "ci95": pytest.approx(
            [0.51 if probe == "audio" else 0.646, 1.0], abs=1e-2)}
        assert acc["unrelated"][probe]["accuracy"] == 0.0 and acc["unrelated"][probe]["n"] == 14
    assert "audio" not in acc["synonym"]
    assert len(res["skipped"]) == 7 + 3 and {s["probe"] for s in res["skipped"]} == {"audio"}
    assert res["skipped"][0]["reason"] == "no clip labelled 'thump'"
    sizes = {size for prompt, size in heard if "two sounds" in prompt}
    assert sizes == {2 * 32000 + 8000}
    assert all(size is None for prompt, size in heard if prompt.startswith("Is the sound of"))


def test_bad_pairs_file_names_the_line(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"a": "x", "b": "y", "relation": "synonym"}\n{"a": "x", "b": "y", "relation": "cousin"}\n')
    with pytest.raises(ValueError, match="pairs.jsonl:2: relation 'cousin'"):
        hierarchy.read_pairs(bad)


def test_tiny_embedder_vocabulary_is_the_same_on_every_build(tmp_path):
    """The tiny embedder is rebuilt on every fresh machine: its tokenizer must not depend on the build, or caption
    metrics of identical captions differ between two runs."""
    from eval.embedders import _wordpiece

    first, second = tmp_path / "a", tmp_path / "b"
    _wordpiece(first), _wordpiece(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
