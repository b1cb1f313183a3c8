"""Reference rows of the spectrogram benchmark: an ASR checkpoint (a tiny random Whisper built offline) picks the
option nearest its transcript; people's answers come from a CSV; published figures stand in for both otherwise."""

from __future__ import annotations

import json

import pytest

from data_builders.spectrogram_mcq import build, read_items
from eval.spectrogram_references import human_reference, nearest_option, normalise
from eval.suites import get_suite
from test_spectrogram_suite import _ctx


@pytest.fixture(scope="module")
def items_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("smcq_refs")
    build(out, words=16, seed=0, workers=1, progress=False)
    return out / "items.jsonl"


def test_nearest_option_reads_the_transcript():
    options = ["ship", "sheep", "shop", "chip"]
    assert normalise(" Sheep.") == "sheep"
    assert nearest_option(" Sheep.", options) == 1 and nearest_option("CHIP!", options) == 3
    assert nearest_option("shapes", ["ship", "sheep", "shape", "chip"]) == 2  # nearest, not exact
    # a transcript equally far from every option: the pick is drawn, not the first position every time
    picks = {nearest_option("zzzzzz", [f"{w}{k}" for w in ("ab", "cd", "ef", "gh")]) for k in range(40)}
    assert picks == {0, 1, 2, 3}


def test_asr_reference_runs_end_to_end_and_is_cached(tmp_path, items_path):
    from eval.spectrogram_references import build_tiny_whisper
    from train.backbones import load_backbone

    whisper = build_tiny_whisper(tmp_path / "tiny-whisper")
    model, processor = load_backbone("tiny-qwen2.5-vl", cache_dir=tmp_path / "bb")
    res = get_suite("spectrogram_mcq")(_ctx(model, processor, tmp_path, items_path, asr=str(whisper)))
    asr = res["references"]["asr"]
    test = read_items(items_path, "test")
    assert asr["model"] == str(whisper) and asr["n"] == len(test) and not asr.get("published")
    assert res["metrics"]["references/asr"] == asr["accuracy"]
    rows = [json.loads(x) for x in (tmp_path / "spectrogram_mcq_predictions.jsonl").read_text().splitlines()]
    asr_rows = {r["id"]: r for r in rows if r["condition"] == "asr"}
    by_id = {it.id: it for it in test}
    assert set(asr_rows) == set(by_id)
    for item_id, r in asr_rows.items():  # the pick is the option nearest the recogniser's own transcript
        assert r["pred"] == nearest_option(r["transcript"], by_id[item_id].options.graphemic)
    assert asr["accuracy"] == sum(r["pred"] == r["answer"] for r in asr_rows.values()) / len(asr_rows)
    again = _ctx(model, processor, tmp_path, items_path, asr=str(whisper))
    assert get_suite("spectrogram_mcq")(again)["references"]["asr"] == asr and again.cache.misses == 0
    assert res["references"]["human"] == {"published": True, "accuracy": 0.75, "n": None, "ci95": None,
                                          "source": "Seeing isn't Hearing"}
    from eval.report import spectrogram_reference_rows

    rows = spectrogram_reference_rows(res)
    assert [r[0] for r in rows] == list(res["conditions"])
    assert all(r[3].endswith(f"n={len(test)})") and r[4] == "75.0 (published)" for r in rows)


def test_human_answers_are_scored_per_condition(tmp_path, items_path):
    test = read_items(items_path, "test")
    lines = ["id,condition,answer,participant"]
    for k, it in enumerate(test):  # right on all but the first item, as a letter or as the option's text
        pick = (it.answer + 1) % 4 if k == 0 else it.answer
        answer = "ABCD"[pick] if k % 2 == 0 else it.options.phonemic[pick]
        lines.append(f"{it.id},phonemic/spectrogram,{answer},p{k % 2}")
    lines += [f"{test[0].id},phonemic/spectrogram,E,p0", "w9999,phonemic/spectrogram,A,p0",
              f"{test[0].id},phonemic/pictures,A,p0"]
    csv = tmp_path / "human.csv"
    csv.write_text("\n".join(lines) + "\n")
    ref = human_reference(csv, test)
    m = ref["conditions"]["phonemic/spectrogram"]
    assert m["n"] == len(test) and m["accuracy"] == (len(test) - 1) / len(test)
    assert ref["participants"] == 2 and ref["n_skipped"] == 3
    assert ref["skipped"][0].endswith(f"human.csv:{len(test) + 2}: answer 'E' is neither A-D nor one of the options "
                                      f"{test[0].options.phonemic}")
    with pytest.raises(ValueError, match="header lacks"):
        (tmp_path / "bad.csv").write_text("item,answer\nw1,A\n")
        human_reference(tmp_path / "bad.csv", test)
