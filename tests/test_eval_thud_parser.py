"""The free-form parser on realistic answers: never the first capital as a letter, never
undetermined -> synced, hedges between labels are undetermined, answers in other words are understood."""

from __future__ import annotations

import pytest

from eval.thud.parser import parse_answer, parse_offset

CASES = [
    # (answer, expected label, expected offset or None)
    ("AUDIO is delayed by about 2 seconds relative to the video.", "delayed", 2.0),
    ("AUDIO AND VIDEO ARE IN SYNC.", "synced", None),
    ("Audio is early: the thud is heard before the ball lands.", "early", None),
    ("Audio is early by 0.5 s.", "early", 0.5),
    ("A sound can be heard, but it comes about 1.5 seconds after the impact.", "delayed", 1.5),
    ("The audio and video are synchronised.", "synced", None),
    ("Yes, the audio and video are perfectly in sync, and the thud matches the ball hitting the ground.",
     "synced", None),
    ("Yes.", "synced", None),
    ("The sound lags behind the picture.", "delayed", None),
    ("The sound lags by roughly 800 ms.", "delayed", 0.8),
    ("There is no sound at all.", "silent", None),
    ("No sound at all; the clip is silent.", "silent", None),
    ("I can't hear anything in this clip.", "silent", None),
    ("The video is silent.", "silent", None),
    ("The audio track is muted.", "silent", None),
    ("The sound does not match what I see: I hear a metallic clang but a rubber ball is landing.",
     "mismatched", None),
    ("The audio seems to come from a different object; it doesn't match the falling box.", "mismatched", None),
    ("The audio and video are not synchronised. The audio is delayed by about 2.1 seconds.", "delayed", 2.1),
    ("They are out of sync: the audio comes early, roughly one second before the impact.", "early", 1.0),
    ("The audio is not delayed; it is in sync with the video.", "synced", None),
    ("There is no delay, the sound is perfectly aligned with the impact.", "synced", None),
    ("The audio is ahead of the video by about 1-2 seconds.", "early", 1.5),
    ("The sound precedes the visual event.", "early", None),
    ("The video lags behind the audio.", "early", None),
    ("The sound is heard after the visual event, so the audio is late.", "delayed", None),
    ("I think the audio is probably delayed slightly.", "delayed", None),
    ("It could be in sync, or the audio might be slightly delayed.", "undetermined", None),
    ("The audio is either early or delayed, hard to say.", "undetermined", None),
    ("I'm not sure whether the audio is synchronized.", "undetermined", None),
    ("I cannot determine that from this clip.", "undetermined", None),
    ("They are out of sync.", "undetermined", None),
    ("No.", "undetermined", None),
    ("", "undetermined", None),
    ("A ball falls to the ground in a park.", "undetermined", None),
    ("Mostly in sync, but the audio is slightly delayed, maybe 0.3 seconds.", "undetermined", 0.3),
    ("The audio is in sync, but the sound is slightly delayed by 0.3 seconds.", "delayed", 0.3),
    ("The sound is present and matches the video; it is synchronized.", "synced", None),
    ("It is not silent: there is a dull thud exactly when the ball hits the ground.", "synced", None),
    ("The thud is heard two seconds after the ball hits the ground.", "delayed", 2.0),
    ("The clang occurs at the same time as the can lands.", "synced", None),
    ("Audio and video are misaligned; the sound comes too soon.", "early", None),
    ("There's a sound, but it's a glassy clink, which is inconsistent with the wooden box falling.",
     "mismatched", None),
    ("The sound is unrelated to the event shown.", "mismatched", None),
    ("Silence throughout the clip - nothing can be heard.", "silent", None),
    ("B", "undetermined", None),  # a letter means nothing without the options that were shown
    ("There is no noticeable delay between the audio and the video.", "synced", None),
    ("The sound occurs slightly after the ball hits the ground.", "delayed", None),
    ("The audio and video are not synchronized. The sound of the impact is heard before the box lands.", "early",
     None),
    ("The audio is early by approximately 1.5 seconds. The sound is present and it matches the visual content.",
     "early", 1.5),
    ("Yes, the sound matches what I see.", "synced", None),
    ("The impact is seen at 2.5 s but heard at 4.6 s: the sound is delayed by about 2.1 seconds.", "delayed", 2.1),
    ("It is heard at 3.0 s, 0.8 seconds before the ball lands.", "early", 0.8),
    ("The audio seems to be out of sync with the video by about 1 second.", "undetermined", 1.0),
]


@pytest.mark.parametrize("answer,label,offset", CASES)
def test_parser_reduces_realistic_answers(answer, label, offset):
    got = parse_answer(answer)
    assert got.label == label, f"{answer!r}: got {got}"
    if offset is not None:
        assert got.offset == pytest.approx(offset)


def test_at_least_40_answers():
    assert len(CASES) >= 40


@pytest.mark.parametrize("answer,label", [
    ("B", "delayed"), ("(C)", "early"), ("B.", "delayed"), ("Answer: C", "early"), ("The answer is A", "synced"),
    ("AUDIO is early.", "early"),  # the first capital 'A' is not option A (which would read as synced)
    ("Audio is delayed.", "delayed"),
    ("A ball falls", "undetermined"),
])
def test_letters_only_when_explicit(answer, label):
    assert parse_answer(answer, options=["synced", "delayed", "early"]).label == label


def test_undetermined_is_never_synced():
    for text in ["hmm", "The video shows a red ball.", "I don't know.", "Out of sync."]:
        assert parse_answer(text).label != "synced"


@pytest.mark.parametrize("text,value", [("by 2.5 seconds", 2.5), ("about 300ms", 0.3), ("half a second", 0.5),
                                        ("no number here", None), ("roughly .8 s late", 0.8)])
def test_offsets(text, value):
    assert parse_offset(text) == (pytest.approx(value) if value is not None else None)
