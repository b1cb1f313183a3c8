"""Prompt and answer templates of the pair and sample builders (data sources: docs/data.md).

Answers are filled with numbers computed from the annotation and the intervention, never guessed: a delayed clip
with t_visual 2.5 s, t_audio 2.5 s and Δ = +2.1 s says the sound comes at about 4.6 s, 2.1 s late. Every answer type
has at least five phrasings, picked by a seeded generator, so a model cannot key on one sentence.

The prompt of a clip depends only on the clip and the seed (:func:`clip_prompt`), never on its condition: the
original, shifted, muted and swapped versions of a clip are asked exactly the same question, so the prompt cannot
reveal the condition.
Every answer states its label with a keyword the Thud parser and ``train.self_sampled`` read ("in sync",
"delayed"/"late", "early", "silent"/"no sound", "does not match").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# One open question covering the three Thud dimensions, in several wordings (Thud's free-form prompt first).
CLIP_PROMPTS: tuple[str, ...] = (
    "Watch this video and listen to its audio carefully. Are the audio and video synchronised? If not, is the audio "
    "delayed or early, and by how many seconds? Is the sound present, and does it match what you see?",
    "Look at the video and listen closely. Is there a sound, does it fit the visible event, and is it in time with "
    "it? If it is off, say whether it comes late or early and by how much.",
    "Check the soundtrack of this clip against the picture: is a sound present, does it belong to what happens on "
    "screen, and does it occur at the right moment? Give the offset in seconds if it does not.",
    "Pay attention to both what you see and what you hear. Describe the sound of the main event and tell me whether "
    "it is synchronised with the picture, late, early, missing, or from something else.",
    "Does the audio of this video line up with what happens on screen? Tell me if the sound is missing, if it does "
    "not belong to the event, or if it is delayed or early, and by about how many seconds.",
    "Listen to this clip while watching it. When the main event happens, what do you hear, and when? Is the audio "
    "in sync with the video?",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    # The original clip: sound where the annotation puts it.
    "synced": (
        "The audio is in sync with the video: {audio_event} is heard at about {t_sound} s, right when "
        "{visual_event} at {t_visual} s.",
        "In sync. {Visual_event} at about {t_visual} s, and the matching sound, {audio_event}, comes at the same "
        "moment ({t_sound} s).",
        "Sound and picture are synchronised. At around {t_sound} s you hear {audio_event} exactly as {visual_event}.",
        "Yes, the audio is in sync: {audio_event} lines up with the moment {visual_event} (about {t_visual} s).",
        "The soundtrack matches the picture in time. {Audio_event} is heard at roughly {t_sound} s, together with "
        "the visible event: {visual_event}.",
        "Everything is in sync here: {visual_event} at about {t_visual} s and {audio_event} is heard at that same "
        "time.",
    ),
    # Shift(Δ > 0): the sound now comes Δ seconds after the visual event.
    "delayed": (
        "The audio is delayed: {visual_event} at about {t_visual} s, but {audio_event} is only heard at about "
        "{t_sound} s, {offset} s late.",
        "Not in sync. The sound lags the picture by about {offset} seconds: {audio_event} comes at {t_sound} s "
        "while the visible event happens at {t_visual} s.",
        "The soundtrack is late by roughly {offset} s. {Visual_event} at {t_visual} s, yet {audio_event} is heard "
        "only at around {t_sound} s.",
        "Audio delayed by about {offset} seconds: the event is seen at {t_visual} s and its sound, {audio_event}, "
        "arrives at about {t_sound} s.",
        "I hear {audio_event} at about {t_sound} s, which is {offset} s late relative to what I see ({visual_event} "
        "at {t_visual} s). The audio is delayed.",
        "The audio is out of sync and delayed: {audio_event} is heard about {offset} seconds late, at {t_sound} s, "
        "though {visual_event} at {t_visual} s.",
    ),
    # Shift(Δ < 0): the sound now comes |Δ| seconds before the visual event.
    "early": (
        "The audio is early: {audio_event} is heard at about {t_sound} s, {offset} s before the visible event at "
        "{t_visual} s ({visual_event}).",
        "Not in sync. The sound comes about {offset} seconds early: {audio_event} at {t_sound} s, while "
        "{visual_event} only at {t_visual} s.",
        "The soundtrack runs ahead of the picture by roughly {offset} s. {Audio_event} is heard at around {t_sound} "
        "s, but the event is seen at {t_visual} s.",
        "Audio early by about {offset} seconds: its sound, {audio_event}, is heard at about {t_sound} s, and "
        "{visual_event} at {t_visual} s.",
        "I hear {audio_event} at about {t_sound} s, {offset} s too early for what I see ({visual_event} at "
        "{t_visual} s). The audio is early.",
        "The audio is out of sync and early: {audio_event} precedes the visible event by about {offset} seconds "
        "({t_sound} s versus {t_visual} s).",
    ),
    # Mute: the track is silent.
    "silent": (
        "The video is silent: there is no sound at all, even when {visual_event} at about {t_visual} s.",
        "I hear nothing. The audio track is silent, so the expected sound of {visual_event} is absent.",
        "There is no sound in this clip. {Visual_event} at around {t_visual} s, but it makes no audible sound.",
        "The audio is silent throughout; no sound accompanies the moment {visual_event}.",
        "No sound is present. Although {visual_event} at {t_visual} s, the soundtrack stays silent.",
        "Silence: the clip has no audible sound, not even at {t_visual} s when {visual_event}.",
    ),
    # Swap: another clip's track; the heard sound does not belong to the visible event.
    "mismatched": (
        "The sound does not match the video: I hear {heard_event}, but what I see is that {visual_event}, which "
        "would sound like {audio_event}.",
        "The audio does not match the picture. {Visual_event}, yet the soundtrack is {heard_event} instead of "
        "{audio_event}.",
        "Mismatch: the clip shows that {visual_event}, but the sound heard is {heard_event}, not {audio_event}.",
        "What I hear ({heard_event}) does not match what I see: {visual_event}. That event should sound like "
        "{audio_event}.",
        "The sound and the picture do not match. The visible event ({visual_event}) would make {audio_event}, "
        "but the audio contains {heard_event}.",
        "This audio does not match the video: it is {heard_event}, while the video shows that {visual_event}.",
    ),
    # Rejected side of a swap pair: accepts the heard (donor) sound as the visible event's sound.
    "false_match": (
        "The audio is in sync with the video: {heard_event} is heard right when {visual_event} at about {t_visual} s.",
        "In sync. {Visual_event}, and the sound of it, {heard_event}, comes at the same moment.",
        "Sound and picture are synchronised: as {visual_event}, you hear {heard_event}.",
        "Yes, the audio is in sync; {heard_event} is the sound of the visible event ({visual_event}).",
        "The soundtrack fits the picture: {heard_event} accompanies the moment {visual_event}, at about {t_visual} s.",
    ),
}

FV_PROMPTS: dict[str, tuple[str, ...]] = {
    "describe": (
        "Describe what is seen and heard in this video segment.",
        "What happens in this segment? Describe both the visuals and the audio.",
        "Give an event-by-event description of this clip, covering what you see and what you hear.",
        "Describe the events of this segment, including any speech or sounds.",
        "Summarise this part of the video: the visible actions and what can be heard.",
    ),
}

FV_PROMPTS["localise"] = (
    "When in this clip is the following said: \"{quote}\"? Give the time range in seconds.",
    "Listen to the clip. At what time do you hear \"{quote}\"?",
    "Find the moment someone says \"{quote}\". When does it start and end?",
    "In which part of the clip, in seconds, is \"{quote}\" heard?",
    "Locate the words \"{quote}\" in the audio: from when to when are they spoken?",
)

FV_TEMPLATES: dict[str, tuple[str, ...]] = {
    # Temporal localisation: {start}/{end} in seconds of the clip as the model gets it.
    "localise": (
        "It is said from about {start} s to {end} s.",
        "Those words are heard between {start} s and {end} s.",
        "From roughly {start} s until {end} s.",
        "The speaker says it at about {start} s; it ends near {end} s.",
        "It comes between {start} and {end} seconds into the clip.",
    ),
    # Audio-visual correspondence: what is heard while an activity is on screen.
    "correspond": (
        "While {activity}, someone says: \"{quote}\".",
        "During that moment ({activity}) the audio has a voice saying \"{quote}\".",
        "As {activity}, you can hear \"{quote}\".",
        "What is heard then is speech: \"{quote}\", while {activity}.",
        "The soundtrack at that point: \"{quote}\" (while {activity}).",
    ),
    "correspond_question": (
        "What is heard while the video shows this: {activity}?",
        "While {activity}, what does the audio contain?",
        "Listen to the moment when {activity}. What is said?",
        "What can be heard at the point where {activity}?",
        "When {activity}, what is spoken on the soundtrack?",
    ),
    # {visual} = activities of the scene, {audio} = what is heard (speech quoted or the correlation note).
    "describe": (
        "{visual} On the audio, {audio}",
        "Visually: {visual} Audibly: {audio}",
        "{visual} At the same time, {audio}",
        "In this segment, {visual_lc} Meanwhile, {audio}",
        "What is shown: {visual} What is heard: {audio}",
    ),
    "no_speech": (
        "no one speaks and the segment is silent.",
        "there is no speech or sound at all.",
        "the soundtrack is silent.",
        "nothing can be heard.",
        "the audio is empty: no voice, no sound.",
    ),
    "av_answer": (
        "{explanation} The answer is ({letter}) {option}.",
        "{explanation} So the correct option is ({letter}) {option}.",
        "{explanation} Therefore: ({letter}) {option}.",
        "{explanation} Answer: ({letter}) {option}.",
        "{explanation} That makes ({letter}) {option} the right choice.",
    ),
    "av_question": (
        "What is heard while the video shows the following: {activity}?",
        "While this is on screen ({activity}), what does the audio contain?",
        "Which of these is heard during the moment when {activity}?",
        "Listen to the segment. What can be heard when {activity}?",
        "At the moment {activity}, what is said or heard?",
    ),
}


def fmt_seconds(x: float) -> str:
    """Seconds as answers state them: one decimal ("4.6")."""
    return f"{x:.1f}"


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def clip_prompt(source_id: str, seed: int) -> str:
    """The question asked about clip ``source_id``: a function of the clip and the seed only, never of the
    condition, so every condition of the clip gets exactly this text."""
    return CLIP_PROMPTS[_stable_int("clip-prompt", seed, source_id) % len(CLIP_PROMPTS)]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


@dataclass(frozen=True)
class ClipFacts:
    """What an answer about a clip may state: event texts and times (seconds) from the annotation."""

    visual_event: str
    audio_event: str
    t_visual: float
    t_audio: float


def answer(kind: str, facts: ClipFacts, rng: np.random.Generator, *, offset: float = 0.0,
           heard_event: str = "") -> str:
    """Fill a random phrasing of answer ``kind`` with the clip's numbers.

    Args:
        kind: a key of :data:`TEMPLATES` (synced, delayed, early, silent, mismatched, false_match).
        facts: event texts and times of the clip.
        rng: picks the phrasing (seeded by the caller).
        offset: the shift Δ in seconds for delayed/early; the sound is then stated at ``t_audio + Δ``
            (a negative Δ for early). The stated lateness/earliness is ``|Δ|``.
        heard_event: for mismatched/false_match, the donor's audio event (what is actually heard).
    Raises:
        KeyError: unknown kind.
    """
    templates = TEMPLATES[kind]
    if kind == "delayed" and offset <= 0 or kind == "early" and offset >= 0:
        raise ValueError(f"a '{kind}' answer needs offset {'> 0' if kind == 'delayed' else '< 0'}, got {offset}")
    visual = facts.visual_event.strip().rstrip(".") or "the visible event happens"
    audio = facts.audio_event.strip().rstrip(".") or "its sound"
    heard = heard_event.strip().rstrip(".") or "a different sound"
    values = {
        "visual_event": visual, "Visual_event": _cap(visual), "audio_event": audio, "Audio_event": _cap(audio),
        "heard_event": heard, "t_visual": fmt_seconds(facts.t_visual),
        "t_sound": fmt_seconds(facts.t_audio + (offset if kind in ("delayed", "early") else 0.0)),
        "offset": fmt_seconds(abs(offset)),
    }
    return templates[int(rng.integers(len(templates)))].format(**values)


def pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    """A seeded choice among phrasings."""
    return options[int(rng.integers(len(options)))]
