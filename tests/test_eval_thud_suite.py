"""The Thud suite with a stand-in scorer (no model): prompts identical across the conditions of a pair (snapshot),
pixels identical and only the waveform intervened, cache hit and resume, data-parallel shards, the OOD sync set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.context import EvalContext, PredictionCache
from eval.scoring import OptionScores
from eval.thud import suite as thud_suite
from eval.thud.items import build_items, held_out_clips
from eval.thud.options import ThudOptions
from eval.thud.prompts import FREE_FORM_PROMPT, closed_set_question
from eval.thud.records import DIMENSIONS
from recipes.media import MediaSettings

MEDIA = MediaSettings(fps=1, max_frames=4, max_pixels=28 * 28 * 8)
FIXTURE = Path(__file__).parent / "fixtures" / "thud_prompts.json"


@pytest.fixture(scope="module")
def test_clips(synth_dir, tmp_path_factory):
    """Two held-out clips of different object classes (so each can be the other's swap donor)."""
    rows = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()][:2]
    assert rows[0]["object_class"] != rows[1]["object_class"]
    out = tmp_path_factory.mktemp("thud_ann") / "test_clips.jsonl"
    for r in rows:
        r["split"], r["video"] = "test", str((synth_dir / r["video"]).resolve())
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


class FakeModel:
    """Records what the suite shows; prefers the option whose label is ``prefer`` (or the first)."""

    def __init__(self, prefer="delayed", fail_after=None, answer="The audio is delayed by about 2 seconds."):
        self.calls, self.seen, self.prefer, self.fail_after, self.answer = 0, [], prefer, fail_after, answer
        self.batches: list[int] = []  # clips per generate call

    def _tick(self):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed mid-way")
        self.calls += 1

    def score(self, model, processor, media, prompt, options, frames=None, audio=None, shared=None):
        self._tick()
        self.seen.append(("closed", prompt, tuple(options), frames, audio))
        from eval.thud.prompts import OPTION_TEXT

        return OptionScores(tuple(0.0 if o == OPTION_TEXT[self.prefer] else -5.0 for o in options),
                            tuple(1 for _ in options))

    def generate(self, model, processor, media, prompt, clips, max_new_tokens, temperature=0.0):
        self.batches.append(len(clips))
        out = []
        for frames, audio in clips:
            self._tick()
            self.seen.append(("free", prompt, (), frames, audio))
            out.append(self.answer)
        return out


def _ctx(tmp_path, options, cache_name="c.jsonl", shard=(0, 1), also=()):
    return EvalContext(checkpoint=tmp_path, fingerprint="fp", model=None, processor=None, media=MEDIA,
                       out_dir=tmp_path, cache=PredictionCache(tmp_path / cache_name, also_read=also),
                       options=options, seed=0, shard=shard)


@pytest.fixture
def fake(monkeypatch):
    fm = FakeModel()
    monkeypatch.setattr(thud_suite, "score_options", fm.score)
    monkeypatch.setattr(thud_suite, "generate_answers", fm.generate)
    return fm


def test_prompt_snapshot():
    snap = json.loads(FIXTURE.read_text())
    assert FREE_FORM_PROMPT == snap["free_form"]
    for dim in DIMENSIONS:
        q = closed_set_question(snap["source_id"], dim, snap["seed"])
        assert q.prompt == snap["closed_set"][dim]["prompt"]
        assert list(q.order) == snap["closed_set"][dim]["order"]


def test_pairs_see_identical_prompts_and_pixels(tmp_path, test_clips, fake):
    opts = {"annotations": str(test_clips), "shifts_per_clip": 2}
    res = thud_suite.run(_ctx(tmp_path, opts))
    items = build_items(held_out_clips(test_clips), shifts_per_clip=2)
    assert {i.condition for i in items} == {"original", "shift", "mute", "swap"}
    by_prompt: dict[tuple, list] = {}
    for kind, prompt, options, frames, audio in fake.seen:
        by_prompt.setdefault((kind, prompt, options), []).append((frames, audio))
        # Nothing the model sees names the condition, the clip or its file.
        low = prompt.lower()
        assert not any(w in low for w in ("shift", "mute", "swap", "original", "synth_", ".mp4", "donor"))
    # Closed set: per clip, 3 dimension prompts, each shown with the original and its intervened versions.
    closed = [k for k in by_prompt if k[0] == "closed"]
    assert len(closed) == 2 * 3
    for key in closed:
        shown = by_prompt[key]
        assert len(shown) >= 2
        for frames, _ in shown[1:]:
            assert np.array_equal(frames, shown[0][0])  # pixels identical across conditions
        assert any(not np.array_equal(a, shown[0][1]) for _, a in shown[1:])  # only the waveform differs
    free = [k for k in by_prompt if k[0] == "free"]
    assert len(free) == 1 and free[0][1] == FREE_FORM_PROMPT
    # Snapshot of the whole closed-set prompt set of the first clip.
    snap = json.loads(FIXTURE.read_text())
    first = {closed_set_question(snap["source_id"], d, 0).prompt for d in DIMENSIONS}
    if held_out_clips(test_clips)[0].record.id == snap["source_id"]:
        assert first <= {k[1] for k in closed}
    rows = [json.loads(line) for line in Path(res["predictions"]["closed_set"]).read_text().splitlines()]
    assert all(r["labelled_by"] == "closed_set" and len(r["option_order"]) == 5 for r in rows)
    m = res["metrics"]["closed_set"]
    assert m["temporal_sync"]["accuracy_original"] == 0.0  # the stand-in always says "delayed"
    ff = res["metrics"]["free_form"]
    assert ff["offset_error"]["n"] >= 1 and res["labelled_by"]["free_form"] == {"parser": len(
        Path(res["predictions"]["free_form"]).read_text().splitlines())}


def test_cache_hit_and_resume(tmp_path, test_clips, monkeypatch):
    opts = {"annotations": str(test_clips)}
    killed = FakeModel(fail_after=5)
    monkeypatch.setattr(thud_suite, "score_options", killed.score)
    monkeypatch.setattr(thud_suite, "generate_answers", killed.generate)
    with pytest.raises(KeyboardInterrupt):
        thud_suite.run(_ctx(tmp_path, opts))
    assert killed.calls == 5
    # Three closed-set answers were stored; the free-form batch the kill interrupted was not.
    stored = len((tmp_path / "c.jsonl").read_text().splitlines())
    assert stored == 3 and killed.batches == [8]
    resumed = FakeModel()
    monkeypatch.setattr(thud_suite, "score_options", resumed.score)
    monkeypatch.setattr(thud_suite, "generate_answers", resumed.generate)
    ctx = _ctx(tmp_path, opts)
    first = thud_suite.run(ctx)
    total = stored + resumed.calls
    assert ctx.cache.hits == stored and ctx.cache.misses == resumed.calls > 0
    again = FakeModel()
    monkeypatch.setattr(thud_suite, "score_options", again.score)
    monkeypatch.setattr(thud_suite, "generate_answers", again.generate)
    ctx2 = _ctx(tmp_path, opts)
    second = thud_suite.run(ctx2)
    assert again.calls == 0 and ctx2.cache.hits == total
    assert second["metrics"] == first["metrics"]
    # A change of settings (another seed reshuffles the options) is a different prediction: no stale hit.
    ctx3 = _ctx(tmp_path, opts)
    ctx3.seed = 1
    thud_suite.run(ctx3)
    assert again.calls > 0


def test_shards_merge_to_the_single_process_result(tmp_path, test_clips, fake):
    opts = {"annotations": str(test_clips), "modes": ["closed_set"]}
    single = thud_suite.run(_ctx(tmp_path / "one", opts))
    n_single = fake.calls
    for rank in (0, 1):
        thud_suite.run(_ctx(tmp_path / "two", opts, cache_name=f"predictions.rank{rank}.jsonl", shard=(rank, 2)))
    assert fake.calls == 2 * n_single  # each unit computed by exactly one shard
    shard_files = tuple(sorted((tmp_path / "two").glob("predictions.rank*.jsonl")))
    ctx = _ctx(tmp_path / "two", opts, cache_name="predictions.rank0.jsonl", also=shard_files)
    merged = thud_suite.run(ctx)
    assert ctx.cache.misses == 0 and fake.calls == 2 * n_single
    assert merged["metrics"] == single["metrics"]


def test_free_form_answers_are_batched_and_equal_one_at_a_time(tmp_path, test_clips, fake):
    """Free-form answers are generated batch_size clips at a time: the rows, the cache (one entry and one miss per
    answer) and a second run's hits are those of one-at-a-time generation; shards batch their own answers."""
    opts = {"annotations": str(test_clips), "modes": ["free_form"]}
    one = _ctx(tmp_path / "one", {**opts, "batch_size": 1})
    single = thud_suite.run(one)
    assert fake.batches == [1] * 8 and one.cache.misses == 8
    fake.batches.clear()
    three = _ctx(tmp_path / "three", {**opts, "batch_size": 3})
    batched = thud_suite.run(three)
    assert fake.batches == [3, 3, 2] and three.cache.misses == 8
    assert batched["metrics"] == single["metrics"]
    rows = [Path(r["predictions"]["free_form"]).read_text() for r in (single, batched)]
    assert rows[0] == rows[1]
    again = _ctx(tmp_path / "three", {**opts, "batch_size": 3})
    fake.batches.clear()
    thud_suite.run(again)
    assert fake.batches == [] and again.cache.hits == 8
    fake.batches.clear()
    for rank in (0, 1):  # both modes: free-form units interleave with closed-set ones across the shards
        thud_suite.run(_ctx(tmp_path / "two", {"annotations": str(test_clips), "batch_size": 3},
                            cache_name=f"predictions.rank{rank}.jsonl", shard=(rank, 2)))
    assert sum(fake.batches) == 8 and max(fake.batches) <= 3


def test_sync_set_per_band(tmp_path, test_clips, fake):
    clips = held_out_clips(test_clips)
    sync = tmp_path / "vggss.jsonl"
    sync.write_text("".join(json.dumps({"video": str(c.path), "offset": off, "band": band}) + "\n"
                            for c in clips for off, band in ((0.0, "synced"), (1.2, "medium"), (-1.2, "medium"))))
    res = thud_suite.run(_ctx(tmp_path, {"sync_set": str(sync), "modes": ["closed_set"]}))
    bands = res["sync_set"]["closed_set"]
    # The stand-in says "delayed": right on +1.2 s, wrong on -1.2 s and on the synced clips.
    assert {k: bands["synced"][k] for k in ("accuracy", "n")} == {"accuracy": 0.0, "n": 2}
    assert bands["synced"]["ci95"] == [0.0, pytest.approx(65.762, abs=1e-3)]
    assert {k: bands["medium"][k] for k in ("accuracy", "n")} == {"accuracy": 50.0, "n": 4}
    assert bands["all"]["n"] == 6
    # VGGSync: class-balanced over synced (0/2), delayed (2/2) and early (0/2) = 33.3.
    vgg = res["sync_set_sync"]["closed_set"]
    assert vgg["value"] == pytest.approx(100 / 3) and vgg["n"] == 6
    assert {c: v["n"] for c, v in vgg["classes"].items()} == {"synced": 2, "delayed": 2, "early": 2}
    assert all(q[1].startswith(closed_set_question("x", "temporal_sync", 0).prompt.split("\n")[0])
               for q in fake.seen)


def test_bad_options_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError):
        thud_suite.run(_ctx(tmp_path, {"annotations": "x.jsonl", "modes": ["telepathy"]}))
    with pytest.raises(ValueError, match="annotations"):
        thud_suite.run(_ctx(tmp_path, {}))


def test_judge_reads_every_answer_and_keeps_the_parser_label(tmp_path, test_clips, monkeypatch):
    from eval.thud.judge import JudgeConfig, Verdict, parse_judge_reply
    from eval.thud.parser import Parsed

    assert parse_judge_reply('Sure: {"label": "early", "offset": 0.7}') == Parsed("early", 0.7)
    assert parse_judge_reply('{"label": "kinda"}').label == "undetermined"
    assert parse_judge_reply("no json").label == "undetermined"
    with pytest.raises(ValueError):
        JudgeConfig(kind="openai")
    cases = [("all", "The audio is early.", "judge"), ("undetermined", "The audio is early.", "parser"),
             ("undetermined", "A ball hits the ground.", "judge")]
    for scope, answer, expect_by in cases:
        monkeypatch.setattr(thud_suite, "generate_answers", FakeModel(answer=answer).generate)
        asked: list[str] = []

        def judge(text):
            asked.append(text)
            return Verdict(Parsed("mismatched"), '{"label": "mismatched"}')

        opts = thud_suite.ThudOptions(annotations=str(test_clips), modes=["free_form"],
                                      judge=JudgeConfig(kind="openai", url="http://127.0.0.1:9/v1", model="m",
                                                        scope=scope))
        items = build_items(held_out_clips(test_clips))
        rows = thud_suite.evaluate_items(_ctx(tmp_path / f"{scope}{len(answer)}", {}), items, opts,
                                         judge)["free_form"]
        assert {r.labelled_by for r in rows} == {expect_by}
        assert len(asked) == (len(items) if expect_by == "judge" else 0)
        if expect_by == "judge":
            assert {r.label for r in rows} == {"mismatched"}
            assert {r.parser_label for r in rows} == {parse_judge_reply("").label if "ball" in answer else "early"}
            summary = thud_suite.judge_summary(rows)
            assert summary["judged"] == len(items) and summary["agreement"]["value"] == 0.0


def test_free_form_without_judge_is_marked_unreliable_and_a_served_judge_fixes_it(tmp_path, test_clips, monkeypatch):
    from eval.report import write_report
    from _judge_server import JudgeServer

    # A model that narrates only what it sees: the parser cannot read it, so 100 % of answers are undetermined.
    monkeypatch.setattr(thud_suite, "generate_answers", FakeModel(answer="A ball falls onto the floor.").generate)
    res = thud_suite.run(_ctx(tmp_path / "a", {"annotations": str(test_clips), "modes": ["free_form"]}))
    assert res["reliability"]["free_form"] == {"undetermined_pct": 100.0, "judged": False, "unreliable": True}
    write_report({"checkpoint": "x", "settings": {}, "suites": {"thud": {"status": "ok", **res}}}, tmp_path / "a")
    report = (tmp_path / "a" / "report.md").read_text()
    assert "**unreliable**: 100% of free-form answers could not be labelled" in report
    assert "| free_form | unreliable |" in report and "| unreliable | 100.0 |" in report
    assert res["item_plan"]["dropped"] == {"shift": 0, "swap": 0}
    # The same answers read by a judge behind a real OpenAI-compatible server on 127.0.0.1.
    with JudgeServer(lambda messages: '{"label": "synced", "offset": null}') as srv:
        res = thud_suite.run(_ctx(tmp_path / "b", {"annotations": str(test_clips), "modes": ["free_form"],
                                                   "judge": {"kind": "openai", "url": srv.url, "model": "m"}}))
        n_answers = res["n_items"]
        assert len(srv.requests) == n_answers
    assert res["reliability"]["free_form"]["unreliable"] is False
    assert res["judge"]["judged"] == n_answers and res["judge"]["agreement"]["value"] == 0.0
    m = res["metrics"]["free_form"]
    assert m["temporal_sync"]["accuracy_original"] == 100.0 and m["axes"]["mute_hallucination"]["value"] == 100.0


def test_split_option_picks_training_clips_and_never_mixes_in_held_out_ones(synth_dir, tmp_path):
    """``split: train`` is how a training recipe is tuned on its own clips: it must return those and only those."""
    rows = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()][:4]
    for r, split in zip(rows, ["train", "test", "train", "test"]):
        r["split"], r["video"] = split, str((synth_dir / r["video"]).resolve())
    ann = tmp_path / "annotations.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = {"train": sorted(r["id"] for r in rows[::2]), "test": sorted(r["id"] for r in rows[1::2])}
    for split, ids in want.items():
        assert [c.record.id for c in held_out_clips(ann, split=split)] == ids
    with pytest.raises(ValueError, match="split"):
        ThudOptions.model_validate({"annotations": str(ann), "split": "validation"})
    only_test = tmp_path / "test_only.jsonl"
    only_test.write_text("".join(json.dumps(r) + "\n" for r in rows[1::2]))
    with pytest.raises(ValueError, match="split: train"):
        held_out_clips(only_test, split="train")


def test_room_tone_shift_gap_leaves_no_silence_and_keys_its_own_predictions(tmp_path, test_clips, fake):
    """``shift_gap: room_tone``: shifted tracks reach the model without the digital silence a shift leaves (which
    tells a shifted track from the audio alone), under keys of their own; the originals' predictions are reused."""
    base = {"annotations": str(test_clips), "modes": ["closed_set"], "conditions": ["shift"]}
    thud_suite.run(_ctx(tmp_path, base))
    silent = [a for kind, *_, a in fake.seen if kind == "closed"]
    fake.seen.clear()
    res = thud_suite.run(_ctx(tmp_path, {**base, "shift_gap": "room_tone"}))
    filled = [a for kind, *_, a in fake.seen if kind == "closed"]
    n_shift = res["item_plan"]["items"]["shift"]
    assert n_shift > 0 and len(filled) == n_shift, "only the shifted items are asked again"
    for f in filled:
        s = next(a for a in silent if a.shape == f.shape and not np.array_equal(a, f)
                 and np.array_equal(a[a != f], np.zeros(int((a != f).sum()), dtype=a.dtype)))
        edge = np.flatnonzero(s != f)
        assert np.count_nonzero(f[edge]) > 0.9 * edge.size  # the silent gap now holds the clip's quiet
        assert edge[0] == 0 or edge[-1] == s.size - 1, "only the gap at one end is filled"
    assert res["options"]["shift_gap"] == "room_tone"
