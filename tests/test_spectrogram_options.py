"""Spectrogram MCQ without audio: PED, option-set validity, text-only baselines, chance statistics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_builders.spectrogram_mcq import (assign_items, nearest_neighbour_sets, ped, plan_items, segments)
from data_builders.spectrogram_mcq.options import _encode, ped_one_to_many
from eval.spectrogram_baselines import Accuracy, heuristics, option_features, text_only_baselines, wilson
from eval.spectrogram_mcq import summarise


@pytest.fixture(scope="module")
def planned():
    """800 words' items (eSpeak NG IPA only, no rendering): 200 option sets, 160 test items."""
    return plan_items(800, seed=3)


@pytest.mark.parametrize("a,b,want", [
    ("ʃ_ˈɪ_p", "ʃ_ˈiː_p", 1),    # ship / sheep: vowel length is a different segment
    ("ʃ_ˈɪ_p", "tʃ_ˈɪ_p", 1),    # ship / chip: the affricate is one segment
    ("ʃ_ˈɪ_p", "ʃ_ˈɑː_p", 1),    # ship / shop (en-us)
    ("k_ˈæ_t", "k_ˈæ_t_s", 1),   # cat / cats: one insertion
    ("k_ˈæ_t", "d_ˈɔ_ɡ", 3),     # cat / dog: three substitutions
    ("ˈɪ_n_s_ɛ_n_s", "ɪ_n_s_ˈɛ_n_s", 0),  # stress alone is not a phoneme
])
def test_ped_known_pairs(a, b, want):
    assert ped(segments(a), segments(b)) == want


def test_ped_with_espeak_pronunciations():
    from data_builders.spectrogram_mcq.render import phonemize

    ship, sheep, chip, ship_again = (segments(x) for x in phonemize(["ship", "sheep", "chip", "ship"]))
    assert ship == ("ʃ", "ɪ", "p") and ped(ship, sheep) == 1 and ped(ship, chip) == 1 and ped(ship, ship_again) == 0


def test_vectorised_ped_matches_reference():
    rng = np.random.default_rng(0)
    segs = [tuple(rng.choice(list("abcdef"), size=rng.integers(1, 9))) for _ in range(60)]
    mat, lens = _encode(segs)
    for i in range(0, 60, 7):
        fast = ped_one_to_many(mat[i], int(lens[i]), mat, lens)
        assert fast.tolist() == [ped(segs[i], s) for s in segs]


def test_answer_positions_balanced_per_split(planned):
    for split in ("train", "test"):
        counts = Counter(it.answer for it in planned if it.split == split)
        assert len(counts) == 4 and len(set(counts.values())) == 1, counts


def test_options_distinct_and_answer_consistent(planned):
    for it in planned:
        assert len(set(it.options.graphemic)) == 4 and len(set(it.options.phonemic)) == 4
        assert it.options.graphemic[it.answer] == it.word and it.options.phonemic[it.answer] == it.ipa
        assert it.ped[it.answer] == 0 and all(p > 0 for k, p in enumerate(it.ped) if k != it.answer)
        assert it.ped == [float(ped(o, it.phonemes)) for o in it.option_phonemes]


def test_train_test_disjoint_by_word(planned):
    words = {s: {w for it in planned if it.split == s for w in it.options.graphemic} for s in ("train", "test")}
    assert words["train"] and words["test"] and not words["train"] & words["test"]
    assert len({it.word for it in planned}) == len(planned)  # every word is the answer of exactly one item


def test_distractors_are_near_misses(planned):
    """Distractors are chosen by PED: on average much closer to the answer than random words are."""
    rng = np.random.default_rng(0)
    chosen = np.mean([p for it in planned for k, p in enumerate(it.ped) if k != it.answer])
    other = [it.phonemes for it in planned]
    random_ped = np.mean([ped(other[i], other[j]) for i, j in rng.integers(0, len(other), (500, 2)) if i != j])
    assert chosen < 0.6 * random_ped, (chosen, random_ped)


def test_text_only_baselines_sit_at_chance(planned):
    """Every options-only baseline (heuristics on all items; classifier fit on train, scored on test) is at 25%."""
    train = [it for it in planned if it.split == "train"]
    for subset in (planned, [it for it in planned if it.split == "test"]):
        res = text_only_baselines(train, subset, seed=0)
        assert "logistic_options_only" in res and "most_central_ped" in res
        for name, r in res.items():
            lo, hi = r["ci95"]
            assert lo <= 0.25 <= hi, (name, r)
            assert abs(r["accuracy"] - 0.25) < 0.1, (name, r)


def test_centrality_baseline_detects_nearest_neighbour_design():
    """Positive control: with the naive design (distractors = the answer's nearest neighbours) the centrality
    baseline beats chance, so the chance-level result above is a property of the design, not a blind baseline."""
    from data_builders.spectrogram_mcq.build import _words

    entries, segs, _ = _words(400, "en-us")
    plans = assign_items(nearest_neighbour_sets(segs, seed=0), seed=0, answer_first=True)
    zipf = {e.word: e.zipf for e in entries}

    class _Item:  # the fields option_features reads
        def __init__(self, p):
            self.options = type("O", (), {"graphemic": [entries[o].word for o in p.options]})()
            self.option_phonemes = [segs[o] for o in p.options]
            self.answer = p.answer

    central = heuristics()["most_central_ped"]
    rng = np.random.default_rng(0)
    hits = []
    for p in plans:
        scores = central(option_features(_Item(p), zipf))
        hits.append(int(rng.choice(np.flatnonzero(scores == scores.max()))) == p.answer)
    acc = Accuracy.of(hits)
    assert acc.ci95[0] > 0.3, acc


def test_random_scorer_lands_near_chance():
    rng = np.random.default_rng(1)
    items = plan_items(40, seed=0)
    many = [items[i % len(items)] for i in range(4000)]
    res = summarise(many, [int(rng.integers(4)) for _ in many])
    assert res["n"] == 4000 and res["ci95"][0] <= 0.25 <= res["ci95"][1] and abs(res["accuracy"] - 0.25) < 0.03
    # a random pick's PED matches the expected PED of a random pick
    assert abs(res["mean_ped_selected"] - res["mean_ped_random"]) < 0.1
    perfect = summarise(items, [it.answer for it in items])
    assert perfect["accuracy"] == 1.0 and perfect["mean_ped_selected"] == 0.0 and perfect["mean_ped_random"] > 0


def test_wilson_interval():
    lo, hi = wilson(25, 100)
    assert lo == pytest.approx(0.1754, abs=1e-3) and hi == pytest.approx(0.3430, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_missing_synthesiser_names_the_install_command(monkeypatch):
    import data_builders.spectrogram_mcq.render as render

    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="sudo apt-get install espeak-ng"):
        plan_items(40)


def test_suite_limit_takes_whole_option_sets(planned):
    """A frequency-biased options-only scorer is at exactly 25% on the suite's subset, but not on "first N by id"
    (ids follow frequency order), which is the trap ``select`` avoids."""
    from data_builders.spectrogram_mcq import load_lexicon
    from eval.spectrogram_mcq import select

    zipf = {e.word: e.zipf for e in load_lexicon()}

    def most_frequent(items):
        return [int(np.argmax([zipf[w] for w in it.options.graphemic])) for it in items]

    subset = select(planned, 40)
    assert len(subset) == 40 and all(Counter(it.option_set for it in subset)[it.option_set] == 4 for it in subset)
    assert summarise(subset, most_frequent(subset))["accuracy"] == 0.25
    naive = sorted(planned, key=lambda it: it.id)[:40]
    assert summarise(naive, most_frequent(naive))["accuracy"] > 0.5


def test_prompt_snapshot():
    from data_builders.spectrogram_mcq import prompt

    assert prompt(["ship", "sheep", "shop", "chip"], "graphemic", "spectrogram") == (
        "The image is a spectrogram of one spoken English word.\nWhich of these words is it?\n"
        "A. ship\nB. sheep\nC. shop\nD. chip\nAnswer with the word.")
    assert prompt(["ʃɪp", "ʃiːp", "ʃɑːp", "tʃɪp"], "phonemic", "none") == (
        "Someone spoke one English word.\nWhich of these IPA transcriptions is it?\n"
        "A. ʃɪp\nB. ʃiːp\nC. ʃɑːp\nD. tʃɪp\nAnswer with the transcription.")


def test_validity_report_passes_a_build_and_catches_a_broken_one(planned):
    from eval.spectrogram_baselines import validity

    good = validity(planned)
    assert good["ok"], (good["problems"], good["baselines_off_chance"])
    assert sum(good["positions"]["test"]) == sum(it.split == "test" for it in planned)
    broken = [planned[0].model_copy(update={"answer": (planned[0].answer + 1) % 4}), *planned[1:]]
    assert any("not the item's word" in p for p in validity(broken)["problems"])
    leaked = [it.model_copy(update={"split": "test"}) if it.id == planned[1].id else it for it in planned]
    twin = next(it for it in planned if it.split == "train").model_copy(update={"split": "test", "id": "dup"})
    assert "a word is in both splits" in validity([*leaked, twin])["problems"]


@pytest.fixture(scope="module")
def nearest():
    """800 words, the paper's design: each word an answer, its distractors among its 10 closest words."""
    return plan_items(800, seed=3, distractors="nearest")


def test_nearest_mode_items_are_well_formed(nearest):
    assert len(nearest) == 800 and len({it.word for it in nearest}) == 800  # every word the answer once
    for it in nearest:
        assert len(set(it.options.graphemic)) == 4 and len(set(it.options.phonemic)) == 4
        assert it.options.graphemic[it.answer] == it.word and it.ped[it.answer] == 0
        assert it.ped == [float(ped(o, it.phonemes)) for o in it.option_phonemes]
    for split in ("train", "test"):
        counts = Counter(it.answer for it in nearest if it.split == split)
        assert max(counts.values()) - min(counts.values()) <= 1, counts
    words = {s: {w for it in nearest if it.split == s for w in it.options.graphemic} for s in ("train", "test")}
    assert not words["train"] & words["test"]
    assert sum(it.split == "test" for it in nearest) == 160


def test_nearest_distractors_are_among_the_answers_closest_words(nearest):
    """Each distractor is no farther than the answer's 10th closest word of its split (ties included)."""
    phon = {it.word: it.phonemes for it in nearest}
    for it in nearest[::16]:
        same = [phon[o.word] for o in nearest if o.split == it.split and o.word != it.word]
        tenth = sorted(ped(it.phonemes, s) for s in same)[9]
        assert all(p <= tenth for k, p in enumerate(it.ped) if k != it.answer), it.id


def test_both_modes_pass_validity_and_nearest_distractors_are_closer(planned, nearest):
    from data_builders.spectrogram_mcq import build_summary
    from eval.spectrogram_baselines import validity

    for items in (planned, nearest):
        report = validity(items)
        assert report["ok"], (report["problems"], report["baselines_off_chance"])
    groups_ped, nearest_ped = (build_summary(items)["mean_distractor_ped"] for items in (planned, nearest))
    assert nearest_ped < groups_ped, (nearest_ped, groups_ped)


def test_literal_three_nearest_fail_validity():
    """The paper's description taken literally (the answer's 3 closest words) hands a text-only model the answer:
    the validity check catches it, which is why the nearest mode steers its draw."""
    from eval.spectrogram_baselines import validity

    report = validity(plan_items(400, seed=3, distractors="nearest", pool=3))
    assert not report["ok"] and "most_central_ped" in report["baselines_off_chance"]


def test_unknown_distractor_mode_is_refused():
    with pytest.raises(ValueError, match="distractors must be one of"):
        plan_items(40, distractors="random")
