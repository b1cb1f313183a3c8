"""Input conditions and their metrics: fragment windows, the waveform each condition shows, exact metric values
from a known right/wrong table, and a whole run with a stand-in scorer that hears only non-silent audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from eval import scoring
from eval.conditions import (ConditionItem, Fragment, InputCondition, InputConditions, condition_audio,
                             evaluate_conditions, windows)
from eval.context import EvalContext, PredictionCache
from eval.reliance import summarise
from recipes.media import MediaSettings


def test_windows_cover_the_clip_and_end_flush():
    assert windows(2.0, Fragment(window=0.5)) == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]
    assert windows(2.0, Fragment(window=0.8, stride=0.5)) == [(0.0, 0.8), (0.5, 1.3), (1.0, 1.8), (1.2, 2.0)]
    assert windows(1.5, Fragment(window=2.0)) == [(0.0, 1.5)]


def test_condition_audio():
    sr = 10
    audio = np.arange(1, 21, dtype=np.float32)  # 2 s
    assert condition_audio(audio, sr, InputCondition("full", "full")) is audio
    assert condition_audio(audio, sr, InputCondition("no_audio/omitted", "no_audio", "omitted")) is None
    silent = condition_audio(audio, sr, InputCondition("no_audio/silence", "no_audio", "silence"))
    assert silent.shape == audio.shape and not silent.any()
    kept = condition_audio(audio, sr, InputCondition("f", "fragment", "silence", (0.5, 1.0)))
    assert kept.shape == audio.shape and list(np.nonzero(kept)[0]) == [5, 6, 7, 8, 9]
    assert list(kept[5:10]) == [6, 7, 8, 9, 10]
    cut = condition_audio(audio, sr, InputCondition("f", "fragment", "cut", (0.5, 1.0)))
    assert list(cut) == [6, 7, 8, 9, 10]


def test_bad_condition_settings_are_refused():
    with pytest.raises(ValidationError, match="at least one no_audio"):
        InputConditions(no_audio=[], fragments=[Fragment(window=1.0)])
    with pytest.raises(ValidationError, match="twice"):
        InputConditions(no_audio=["silence", "silence"])
    with pytest.raises(ValidationError):
        InputConditions(no_audio=["muted"])
    with pytest.raises(ValidationError):
        Fragment(window=0)


def test_metrics_from_a_known_table():
    spec = InputConditions(fragments=[Fragment(window=1.0)])
    f = spec.fragments[0].name
    table = {"full": {"a": [True], "b": [True], "c": [True], "d": [False]},
             "no_audio/omitted": {"a": [True], "b": [False], "c": [False], "d": [False]},
             "no_audio/silence": {"a": [False], "b": [False], "c": [True], "d": [False]},
             f: {"a": [True, False], "b": [False, True], "c": [False, False], "d": [False, False]}}
    res = summarise(table, spec, seed=0)
    assert res["n_items"] == 4 and res["accuracy"]["full"]["accuracy"] == 0.75
    assert res["accuracy"]["no_audio/omitted"]["accuracy"] == 0.25
    assert res["text_prior_retention"]["omitted"]["value"] == pytest.approx(1 / 3)
    assert res["text_prior_retention"]["silence"]["value"] == pytest.approx(1 / 3)
    lo, hi = res["text_prior_retention"]["omitted"]["ci95"]
    assert 0 <= lo <= 1 / 3 <= hi
    assert res["audio_reliance"]["omitted"] == {"value": 0.5, "n": 4, "ci95": pytest.approx([0.15, 0.85], abs=0.01)}
    assert res["audio_reliance"]["silence"]["value"] == 0.5
    assert res["audio_reliant"]["n"] == 1  # only b is right with audio and wrong under both variants
    frag = res["fragments"][f]
    assert frag["sufficiency"]["value"] == 1.0 and frag["sufficiency"]["n"] == 1
    assert frag["needs_whole_clip"]["value"] == 0.0
    assert frag["mean_window_accuracy"]["value"] == pytest.approx(0.25)
    assert frag["any_window_accuracy"]["accuracy"] == 0.5


class Hears:
    """Stand-in scorer: the right option when the audio it is given is not silent, option 0 otherwise."""

    def __init__(self, right: dict[str, int]):
        self.right, self.calls = right, 0

    def __call__(self, model, processor, media, prompt, options, frames=None, audio=None, image=None):
        self.calls += 1
        pick = self.right[prompt] if audio is not None and np.abs(audio).max() > 0.1 else 0
        return scoring.OptionScores(tuple(0.0 if i == pick else -3.0 for i in range(len(options))),
                                    tuple(1 for _ in options))


def test_a_run_with_a_scorer_that_hears(tmp_path, monkeypatch):
    sr = 16000
    items, right = [], {}
    for k in range(4):
        audio = np.zeros(2 * sr, np.float32)
        audio[int(0.1 * sr):int(0.3 * sr)] = 0.5  # the sound sits in the first half second
        prompt = f"question {k}"
        right[prompt] = k % 2  # items 0 and 2: the text prior (option 0) is already right
        items.append(ConditionItem(f"i{k}", prompt, ("A", "B"), frozenset({k % 2}), 2.0,
                                   lambda audio=audio: (None, audio)))
    fake = Hears(right)
    monkeypatch.setattr(scoring, "score_options", fake)
    spec = InputConditions(fragments=[Fragment(window=0.5), Fragment(window=1.0, fill="cut")])

    def ctx():
        return EvalContext(checkpoint=tmp_path, fingerprint="fp", model=None, processor=None,
                           media=MediaSettings(), out_dir=tmp_path, cache=PredictionCache(tmp_path / "c.jsonl"))

    c = ctx()
    res = evaluate_conditions(c, "demo", items, spec)
    assert fake.calls == 4 * (1 + 2 + 4 + 2)
    assert res["accuracy"]["full"]["accuracy"] == 1.0
    assert res["accuracy"]["no_audio/omitted"]["accuracy"] == 0.5
    assert res["accuracy"]["no_audio/silence"]["accuracy"] == 0.5
    assert res["text_prior_retention"]["omitted"]["value"] == 0.5
    assert res["audio_reliance"]["silence"]["value"] == 0.5 and res["audio_reliant"]["n"] == 2
    half = res["fragments"]["fragment/0.5s/0.5s/silence"]
    # reliant items are right in 1 of 4 windows, the others in all 4: mean (0.25 + 1 + 0.25 + 1) / 4
    assert half["mean_window_accuracy"]["value"] == pytest.approx(0.625)
    assert half["sufficiency"]["value"] == 1.0 and half["needs_whole_clip"]["value"] == 0.0
    assert res["fragments"]["fragment/1s/1s/cut"]["mean_window_accuracy"]["value"] == pytest.approx(0.75)
    rows = [json.loads(x) for x in (tmp_path / "demo" / "input_conditions.jsonl").read_text().splitlines()]
    assert len(rows) == fake.calls
    assert (tmp_path / "demo" / "figures" / "accuracy_vs_fragment_length.png").stat().st_size > 1000
    again = evaluate_conditions(ctx(), "demo", items, spec)
    assert fake.calls == 4 * 9 and again["accuracy"] == res["accuracy"]


def test_run_report_lists_conditions_per_checkpoint(tmp_path):
    from eval.report import write_run_report

    spec = InputConditions(no_audio=["silence"])
    table = {"full": {"a": [True], "b": [True]}, "no_audio/silence": {"a": [True], "b": [False]}}
    res = summarise(table, spec)
    entries = [(label, {"suites": {"audio_mcq": {"status": "ok", "metrics": {}, "input_conditions": res}}})
               for label in ("base (step 0)", "dpo/checkpoint-8")]
    text = write_run_report(tmp_path, entries).read_text()
    assert "## audio_mcq: text prior and audio reliance (%)" in text
    assert "| checkpoint | accuracy/full | accuracy/no_audio/silence | text_prior_retention/silence | " \
           "audio_reliance/silence |" in text
    assert "| dpo/checkpoint-8 | 100.0 | 50.0 | 50.0 | 50.0 |" in text


def test_audio_mcq_reader_quarantines_bad_lines(tmp_path):
    from eval.audio_mcq import prompt, read_items

    (tmp_path / "a.wav").write_bytes(b"x")
    lines = [{"audio": "a.wav", "question": "What?", "options": ["dog", "cat"], "answer": "cat"},
             {"video": "a.wav", "question": "What?", "options": ["dog", "cat"], "answer": 0, "id": "q2"},
             {"audio": "a.wav", "question": "What?", "options": ["dog", "cat"], "answer": "cow"},
             {"audio": "a.wav", "video": "a.wav", "question": "What?", "options": ["dog", "cat"], "answer": 0},
             {"audio": "gone.wav", "question": "What?", "options": ["dog", "cat"], "answer": 0},
             {"audio": "a.wav", "options": ["dog", "cat"], "answer": 0}]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")
    items, bad = read_items(path)
    assert [(i.id, i.answer, i.is_video) for i in items] == [("1:a.wav", 1, False), ("q2", 0, True)]
    assert [b["line"] for b in bad] == [3, 4, 5, 6, 7]
    assert "'cow' is not exactly one of the options" in bad[0]["reason"] and "q.jsonl:3" in bad[0]["reason"]
    assert "exactly one of 'audio' and 'video'" in bad[1]["reason"] and "does not exist" in bad[2]["reason"]
    assert "missing field 'question'" in bad[3]["reason"]
    assert prompt("What?", ("dog", "cat")) == "What?\nA. dog\nB. cat\nAnswer with the text of one option."
