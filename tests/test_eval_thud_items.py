"""Table 2's Sync, the intervals and paired test, valid Shift items (training's margin rule, dropped items
counted, offsets balanced) and the one event-category key that build, materialize and eval share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_builders.annotations import AnnotatedClip, ClipAnnotation, event_category, is_swap_donor
from data_builders.pairs import Clip, donors_for, shift_fits
from eval.stats import combined_pct, mcnemar, wilson_pct
from eval.thud.items import DEFAULT_OFFSETS, plan_items
from eval.thud.metrics import band_of, compute_metrics


def _ts(sid, cond, label, offset=None):
    return {"source_id": sid, "dimension": "temporal_sync", "condition": cond, "offset": offset, "label": label}


def test_sync_reproduces_table2_34_3_for_an_always_synced_model(tmp_path, capsys):
    # Answers "synced" to every original; of 1000 delayed and 1000 early clips it gets 1.4 % right (14 each).
    rows = [_ts(f"o{i}", "original", "synced") for i in range(500)]
    rows += [_ts(f"d{i}", "shift", "delayed" if i < 14 else "synced", 2.0) for i in range(1000)]
    rows += [_ts(f"e{i}", "shift", "early" if i < 14 else "synced", -2.0) for i in range(1000)]
    m = compute_metrics(rows)
    assert round(m["sync"]["value"], 1) == 34.3
    assert {c: v["value"] for c, v in m["sync"]["classes"].items()} == {"synced": 100.0, "delayed": 1.4,
                                                                      "early": 1.4}
    assert m["sync"]["n"] == 2500
    lo, hi = m["sync"]["ci95"]
    assert lo < 34.27 < hi and hi - lo < 2.0
    # The pooled Shift accuracy and the pooled temporal_sync accuracy tell another story than Sync.
    assert m["temporal_sync"]["accuracy_intervened"] == pytest.approx(1.4)
    # The same number from the predictions file, through `python -m eval metrics thud`.
    from eval.__main__ import main as eval_main

    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert eval_main(["metrics", "thud", str(pred)]) == 0
    assert round(json.loads(capsys.readouterr().out)["sync"]["value"], 1) == 34.3


def test_sync_needs_all_three_classes():
    m = compute_metrics([_ts("a", "original", "synced"), _ts("a", "shift", "delayed", 1.0)])
    assert m["sync"]["value"] is None and m["sync"]["ci95"] is None
    assert m["sync"]["classes"]["early"]["n"] == 0


def test_intervals_and_mcnemar():
    assert wilson_pct(0, 0) is None
    lo, hi = wilson_pct(7, 10)
    assert lo == pytest.approx(39.68, abs=0.01) and hi == pytest.approx(89.22, abs=0.01)
    # A class at 100 % still carries uncertainty into a combined interval.
    lo, hi = combined_pct([(1 / 3, 10, 10), (1 / 3, 0, 10), (1 / 3, 0, 10)])
    assert lo < 100 / 3 < hi and hi - lo > 5
    assert combined_pct([(1.0, 1, 0)]) is None
    # 10 items right only under a, 1 only under b: two-sided exact p = 2 * P(X <= 1 | 11, 0.5) = 24 / 2048.
    a = [True] * 10 + [False] + [True] * 5
    b = [False] * 10 + [True] + [True] * 5
    t = mcnemar(a, b)
    assert (t["n"], t["a_only"], t["b_only"]) == (16, 10, 1)
    assert t["p"] == pytest.approx(24 / 2048)
    assert mcnemar([True, False], [True, False])["p"] == 1.0
    with pytest.raises(ValueError):
        mcnemar([True], [])


def _clip(cid, duration, t_audio, event="thud", category=None) -> AnnotatedClip:
    rec = ClipAnnotation(id=cid, video=f"{cid}.mp4", duration=duration, t_visual=t_audio, t_audio=t_audio,
                         audio_event=event, audio_category=category, split="test")
    return AnnotatedClip(record=rec, path=Path(f"/clips/{cid}.mp4"), file=Path("/a.jsonl"), line=1)


def test_shift_items_keep_the_sound_inside_the_clip_and_count_what_is_dropped():
    # 5 s clips with the event at 2.5 s (room for 2.3 s either way with the 0.2 s margin), 2.0 s clips with the
    # event at 0.3 s (only a delay up to 1.5 s fits), and a 0.5 s clip that fits no offset at all.
    clips = [_clip(f"long{i}", 5.0, 2.5, f"e{i}") for i in range(16)]
    clips += [_clip(f"short{i}", 2.0, 0.3, f"s{i}") for i in range(6)]
    clips.append(_clip("tiny", 0.5, 0.25, "t"))
    plan = plan_items(clips, DEFAULT_OFFSETS, shifts_per_clip=1, seed=3, margin=0.2)
    by_id = {c.record.id: c.record for c in clips}
    shifts = [i for i in plan.items if i.condition == "shift"]
    for item in shifts:
        rec = by_id[item.source_id]
        onset = rec.t_audio + item.offset
        assert 0.2 - 1e-9 <= onset <= rec.duration - 0.2 + 1e-9, (item.item_id, onset)
    assert plan.dropped["shift"] == ["tiny"]
    assert plan.summary()["dropped"]["shift"] == 1
    # Short clips only take small delays; the long clips then make up the other offsets: every offset used 2-4
    # times, both signs and every band present.
    counts = plan.summary()["shift_offsets"]
    assert set(counts) == {f"{o:+g}" for o in DEFAULT_OFFSETS}
    assert max(counts.values()) - min(counts.values()) <= 2
    assert sum(counts.values()) == 22
    bands = {band_of(i.offset) for i in shifts}
    assert len(bands) == 4
    assert {i.offset > 0 for i in shifts} == {True, False}
    assert shift_fits(2.3, 2.5, 5.0, 0.2) and not shift_fits(2.4, 2.5, 5.0, 0.2) and not shift_fits(0.0, 1, 5, 0)


def test_one_category_key_and_the_donor_rule():
    a = ClipAnnotation(id="a", video="a.mp4", duration=4, t_visual=1, t_audio=1, audio_event="Thud ")
    b = ClipAnnotation(id="b", video="b.mp4", duration=4, t_visual=1, t_audio=1, audio_event="thud")
    c = ClipAnnotation(id="c", video="c.mp4", duration=4, t_visual=1, t_audio=1, audio_event="a dull knock",
                       audio_category="Impact")
    d = ClipAnnotation(id="d", video="d.mp4", duration=4, t_visual=1, t_audio=1, audio_event="glass shatters",
                       audio_category="impact")
    silent = ClipAnnotation(id="s", video="s.mp4", duration=4, t_visual=1, t_audio=1, audio_event="  ")
    assert event_category(a) == event_category(b) == "thud"
    assert event_category(c) == event_category(d) == "impact"  # the category wins over the text
    assert event_category(silent) == ""
    assert not is_swap_donor(b, a) and not is_swap_donor(d, c) and not is_swap_donor(a, a)
    assert is_swap_donor(c, a) and is_swap_donor(a, c)
    assert not is_swap_donor(silent, a) and is_swap_donor(a, silent)  # no event: never a donor
    # Training (pairs) and evaluation (items) apply the same rule.
    train = [Clip(x, f"/{x.id}.mp4", 4.0) for x in (a, b, c, d, silent)]
    assert {x.id for x in donors_for(train[0], train)} == {"c", "d"}
    plan = plan_items([AnnotatedClip(x, Path(f"/{x.id}.mp4"), Path("/f"), 1) for x in (a, b, silent)],
                      conditions=("swap",))
    assert plan.dropped["swap"] == ["a", "b"]
    assert [i.intervention.donor for i in plan.items if i.condition == "swap"] in (["a"], ["b"])


def test_sync_set_lines_are_read_by_the_shared_record_reader(tmp_path):
    from eval.thud.items import read_sync_set

    good = tmp_path / "sync.jsonl"
    good.write_text('\ufeff{"video": "a.mp4", "offset": -1.5, "band": 2}\n\n{"video": "/x/b.mp4", "offset": 0}\n',
                    encoding="utf-8")
    items = read_sync_set(good)
    assert [(i.video, i.condition, i.band, i.offset) for i in items] == [
        (tmp_path / "a.mp4", "shift", "2", -1.5), (Path("/x/b.mp4"), "original", "unbanded", None)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4", "offset": 1}\n{"video": "b.mp4", "offset": NaN}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'offset'"):
        read_sync_set(bad)
