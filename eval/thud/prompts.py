"""Thud prompt texts. Nothing here depends on the condition: the same text is shown for the
original and every intervened version of a clip, so the prompt cannot reveal the condition. Snapshot-tested
(tests/fixtures/thud_prompts.json)."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Mode 2, free form: the one open question, always this exact text.
FREE_FORM_PROMPT = (
    "Watch this video and listen to its audio carefully. Are the audio and video synchronised? If not, is the audio "
    "delayed or early, and by how many seconds? Is the sound present, and does it match what you see?"
)

# Mode 1: one multiple-choice question per dimension. Every question offers the same five answers, so a wrong
# answer is informative (Figure 4: a muted clip called "synced" is a different failure than one called "delayed").
QUESTIONS: dict[str, str] = {
    "temporal_sync": "Watch this video and listen to its audio carefully. Is the sound of the visible event "
                     "synchronised with it?",
    "audio_existence": "Watch this video and listen to its audio carefully. Is there any sound in this video?",
    "sound_consistency": "Watch this video and listen to its audio carefully. Does the sound match the visible "
                         "event?",
}
OPTION_TEXT: dict[str, str] = {
    "synced": "The sound is present and synchronised with the visible event.",
    "delayed": "The sound is delayed: it is heard after the visible event.",
    "early": "The sound is early: it is heard before the visible event.",
    "silent": "There is no sound: the video is silent.",
    "mismatched": "The sound does not match the visible event.",
}
OPTION_LABELS: tuple[str, ...] = tuple(OPTION_TEXT)


@dataclass(frozen=True)
class ClosedSetQuestion:
    """A multiple-choice question: its prompt text and the labels of its options in the order shown."""

    prompt: str
    order: tuple[str, ...]

    @property
    def options(self) -> list[str]:
        """Option texts in the order shown (what is scored)."""
        return [OPTION_TEXT[lab] for lab in self.order]


def option_order(source_id: str, dimension: str, seed: int) -> tuple[str, ...]:
    """Seeded shuffle of the options for one (clip, dimension): identical for every condition of the clip, so the
    pair's prompts are the same text."""
    rng = random.Random(f"{seed}|{source_id}|{dimension}")
    order = list(OPTION_LABELS)
    rng.shuffle(order)
    return tuple(order)


def closed_set_question(source_id: str, dimension: str, seed: int) -> ClosedSetQuestion:
    """The multiple-choice prompt of one (clip, dimension): question, then the lettered options."""
    order = option_order(source_id, dimension, seed)
    lines = [QUESTIONS[dimension]] + [f"{chr(65 + i)}. {OPTION_TEXT[lab]}" for i, lab in enumerate(order)]
    lines.append("Answer with the text of one option.")
    return ClosedSetQuestion(prompt="\n".join(lines), order=order)
