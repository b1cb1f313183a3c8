"""The deterministic judge that decides which of the policy's own answers become rejected sides."""

from __future__ import annotations

import pytest

from train.self_sampled import answers_agree, stated_labels, stated_offset


@pytest.mark.parametrize("text,labels", [
    ("The audio and video are in sync.", {"synced"}),
    ("The sound is delayed by about 2.1 seconds.", {"delayed"}),
    ("The audio is early: the thud comes before the fall.", {"early"}),
    ("There is no sound at all; the clip is silent.", {"silent"}),
    ("The sound does not match the visible event.", {"mismatched"}),
    ("The audio is not in sync.", set()),
    ("The soundtrack matches the picture in time.", {"synced"}),
    ("I hear nothing. The audio track is silent.", {"silent"}),
    ("Not in sync. The sound lags the picture by about 2.1 seconds.", {"delayed"}),
    ("A red ball falls.", set()),
])
def test_stated_labels(text, labels):
    assert stated_labels(text) == labels


def test_offsets_are_read_in_seconds_and_event_times_are_not_offsets():
    assert stated_offset("heard at 4.6 s, 2.1 seconds late") == 2.1
    assert stated_offset("delayed by 2 sec") == 2.0
    assert stated_offset("Audio early by about 1.2 seconds: its sound is heard at about 0.4 s") == 1.2
    assert stated_offset("The soundtrack runs ahead of the picture by roughly 0.9 s.") == 0.9
    assert stated_offset("In sync: the thud comes at the same moment (0.8 s).") is None
    assert stated_offset("delayed") is None


@pytest.mark.parametrize("reference,answer,agree", [
    ("The audio is in sync.", "Yes, they are synchronized.", True),
    ("In sync. A can falls at about 0.8 s, and its clang comes at the same moment (0.8 s).", "In sync.", True),
    ("The audio is in sync.", "The audio is delayed.", False),
    ("The sound is delayed by about 2.1 seconds.", "It comes 2.3 seconds late, delayed.", True),
    ("The sound is delayed by about 2.1 seconds.", "The sound is delayed by about 3.0 seconds.", False),
    ("The sound is delayed by about 2.1 seconds.", "The sound is delayed.", False),
    ("The clip is silent.", "No sound at all.", True),
    ("The answer is (B) a metallic clang.", "B) because of the clang", True),
    ("The answer is (B) a metallic clang.", "(C) a dull thud", False),
    ("A ball bounces twice.", "a ball bounces twice", True),
    ("A ball bounces twice.", "A ball bounces once.", False),
])
def test_answers_agree(reference, answer, agree):
    assert answers_agree(reference, answer, offset_tolerance=0.5) is agree


def test_the_judge_reads_every_reference_phrasing_of_the_data_builders():
    """Each answer template of data_builders/answers.py states its label and (for shifts) its offset to the judge,
    so a policy answer is never marked wrong because of how the reference was worded."""
    answers = pytest.importorskip("data_builders.answers")
    import numpy as np

    from data_builders.synth import OBJECT_CLASSES

    cases = [("synced", 0.0, {"synced"}), ("delayed", 2.1, {"delayed"}), ("early", -1.3, {"early"}),
             ("silent", 0.0, {"silent"}), ("mismatched", 0.0, {"mismatched"})]
    for shown in OBJECT_CLASSES:
        heard = OBJECT_CLASSES[(OBJECT_CLASSES.index(shown) + 1) % len(OBJECT_CLASSES)]
        facts = answers.ClipFacts(visual_event=shown.visual_event, audio_event=shown.audio_event, t_visual=2.5,
                                  t_audio=2.55)
        for seed in range(24):  # enough draws to meet every phrasing of each kind
            for kind, offset, labels in cases:
                text = answers.answer(kind, facts, np.random.default_rng(seed), offset=offset,
                                      heard_event=heard.audio_event)
                assert stated_labels(text) == labels, text
                assert stated_offset(text) == (abs(offset) if offset else None), text
                assert answers_agree(text, text)
