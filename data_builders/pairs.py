"""Pair and sample builders (data sources: docs/data.md): one registry, a plain dict ``name -> builder``.

A builder takes the eligible inputs (:class:`BuildInputs`), a count and a seeded generator and returns exactly that
many :class:`~data_builders.records.PreferencePair`. Inputs are cycled in a seeded order when the count exceeds
them (each pass draws new offsets and phrasings). SFT samples are the chosen sides as single-turn samples
(:func:`sft_samples`), one per condition the builder draws.

Every number an answer states comes from the annotation and the intervention (``meta`` keeps them: ``t_visual``,
``t_audio``, ``offset``, ``t_sound``), so tests can check each answer against its own spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from data_builders.annotations import ClipAnnotation, is_swap_donor
from data_builders.answers import FV_PROMPTS, FV_TEMPLATES, ClipFacts, answer, clip_prompt, fmt_seconds, pick
from data_builders.interventions import ORIGINAL, Intervention, shift_intervention
from data_builders.readers import FineVideoClip, FVActivity, FVScene, FVSpeech, LlavaItem
from data_builders.records import PreferencePair, SFTSample
from recipes.data import ShiftSettings


class BuildError(ValueError):
    """A source that cannot produce what the recipe asks (e.g. no eligible input)."""


@dataclass(frozen=True)
class Clip:
    """A usable training clip: its annotation, absolute video path and probed duration (seconds)."""

    ann: ClipAnnotation
    video: str
    duration: float

    @property
    def id(self) -> str:
        return self.ann.id

    def facts(self) -> ClipFacts:
        return ClipFacts(self.ann.visual_event, self.ann.audio_event, self.ann.t_visual, self.ann.t_audio)


@dataclass(frozen=True)
class Segment:
    """A FineVideo scene cut into its own file at build time (:func:`data_builders.media.cut_span`).

    ``span`` is the part of the scene used, in seconds of the source video (the scene, cut to the recipe's clip
    length); ``video`` is the cut file, whose time 0 is ``offset`` seconds into the source (the key frame the copy
    starts on). Answers state times of the cut file, which is what training and the export show.
    """

    clip: FineVideoClip
    scene: FVScene
    video: str
    offset: float
    span: tuple[float, float]

    @property
    def id(self) -> str:
        return f"{self.clip.id}@{self.scene.start:.3f}"

    def lines(self) -> list[FVSpeech]:
        """Speech lines that overlap the span, in order."""
        lo, hi = self.span
        return [s for s in self.clip.speech if s.text.strip() and s.end > lo and s.start < hi]

    def speech(self) -> list[str]:
        return [s.text.strip() for s in self.lines()]

    def activities(self) -> list[FVActivity]:
        """Activities of the scene that are described and (when timed) overlap the span."""
        lo, hi = self.span
        return [a for a in self.scene.activities if a.description.strip()
                and (a.start is None or a.end is None or (a.end > lo and a.start < hi))]

    def local(self, t: float) -> float:
        """A source time as a time of the cut file, kept inside the span."""
        return min(max(t, self.span[0]), self.span[1]) - self.offset


@dataclass
class BuildInputs:
    """Everything builders draw from (training split only), and the recipe's shift settings and seed."""

    clips: list[Clip] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    llava: list[LlavaItem] = field(default_factory=list)
    shift: ShiftSettings = field(default_factory=ShiftSettings)
    seed: int = 0
    questions: str = "free_form"  # free_form | closed_set (recipes.data.DataSection.questions)
    audio_contrast: float = 0.0  # recipes.data.DataSection.audio_contrast


Builder = Callable[[BuildInputs, int, np.random.Generator], list[PreferencePair]]
PAIR_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Add a builder to :data:`PAIR_BUILDERS`; a second builder of the same name is an error."""

    def deco(fn: Builder) -> Builder:
        if name in PAIR_BUILDERS:
            raise ValueError(f"pair builder '{name}' is already registered ({PAIR_BUILDERS[name].__module__})")
        PAIR_BUILDERS[name] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------------------------------------------
# offsets and donors


def shift_limits(t_audio: float, duration: float, margin: float) -> dict[int, float]:
    """The largest |Δ| per sign (+1 delay, -1 early) that keeps the shifted sound onset ``margin`` seconds inside
    the clip: a delay needs ``t_audio + |Δ| <= duration - margin``, an early shift ``t_audio - |Δ| >= margin``.
    Training pairs and evaluation items both follow this rule, so no item asks about a sound pushed out of the clip."""
    return {1: duration - margin - t_audio, -1: t_audio - margin}


def shift_fits(offset: float, t_audio: float, duration: float, margin: float) -> bool:
    """Whether a signed shift ``offset`` keeps the sound onset inside the clip (:func:`shift_limits`)."""
    return offset != 0 and abs(offset) <= shift_limits(t_audio, duration, margin)[1 if offset > 0 else -1] + 1e-9


def feasible_ranges(shift: ShiftSettings, t_audio: float, duration: float) -> dict[int, list[tuple[float, float]]]:
    """Ranges of |Δ| per sign (+1 delay, -1 early) on the step grid that fit :func:`shift_limits`."""
    limits = shift_limits(t_audio, duration, shift.margin)
    signs = {"both": (1, -1), "delay": (1,), "early": (-1,)}[shift.signs]
    out: dict[int, list[tuple[float, float]]] = {}
    for s in signs:
        ranges = []
        for lo, hi in shift.bands:
            top = min(hi, limits[s])
            # Offsets sit on the step grid so answers state them exactly.
            k_lo, k_hi = int(np.ceil(lo / shift.step - 1e-9)), int(np.floor(top / shift.step + 1e-9))
            if k_hi >= k_lo and k_lo > 0:
                ranges.append((k_lo * shift.step, k_hi * shift.step))
        if ranges:
            out[s] = ranges
    return out


def draw_offset(shift: ShiftSettings, clip: Clip, rng: np.random.Generator, prefer: int | None = None) -> float | None:
    """A signed offset Δ for ``clip``: sign ``prefer`` when feasible (else the other), band uniform, |Δ| uniform on
    the step grid within the band. None when no offset fits the clip."""
    ranges = feasible_ranges(shift, clip.ann.t_audio, clip.duration)
    if not ranges:
        return None
    sign = prefer if prefer in ranges else sorted(ranges)[int(rng.integers(len(ranges)))]
    lo, hi = ranges[sign][int(rng.integers(len(ranges[sign])))]
    k = int(rng.integers(round(lo / shift.step), round(hi / shift.step) + 1))
    return round(sign * k * shift.step, 6)


def shift_eligible(clips: list[Clip], shift: ShiftSettings) -> tuple[list[Clip], list[Clip]]:
    """Split clips into those that fit at least one requested shift and those too short for any."""
    ok = [c for c in clips if feasible_ranges(shift, c.ann.t_audio, c.duration)]
    ids = {c.id for c in ok}
    return ok, [c for c in clips if c.id not in ids]


def donors_for(clip: Clip, clips: list[Clip]) -> list[Clip]:
    """Clips that may donate their track to ``clip`` (:func:`~data_builders.annotations.is_swap_donor`)."""
    return [d for d in clips if is_swap_donor(d.ann, clip.ann)]


def pick_donor(ann: ClipAnnotation, candidates: list[ClipAnnotation], rng: np.random.Generator) -> ClipAnnotation:
    """A swap donor for ``ann`` among ``candidates``: another clip with a different audio event (seeded).

    Raises:
        BuildError: no candidate has a different audio event.
    """
    pool = [c for c in candidates if is_swap_donor(c, ann)]
    if not pool:
        raise BuildError(f"no swap donor for '{ann.id}': every other clip has the same audio event; add clips with "
                         "other sounds")
    return pool[int(rng.integers(len(pool)))]


def _cycle(items: list, n: int, rng: np.random.Generator) -> Iterator[tuple[int, object]]:
    """``n`` items: seeded permutations of ``items`` one after another."""
    k = 0
    while k < n:
        for i in rng.permutation(len(items)):
            if k >= n:
                return
            yield k, items[int(i)]
            k += 1


def _need(source: str, items: list, n: int) -> None:
    if n > 0 and not items:
        raise BuildError(f"source '{source}': no eligible input for {n} items; check the inputs and "
                         "quarantine.jsonl, or set its count to 0")


def _meta(clip: Clip, spec: Intervention, chosen_kind: str, rejected_kind: str, **extra) -> dict:
    offset = spec.offset if spec.kind == "shift" else 0.0
    meta = {"condition": spec.kind, "t_visual": clip.ann.t_visual, "t_audio": clip.ann.t_audio,
            "offset": offset, "t_sound": round(clip.ann.t_audio + offset, 6), "duration": clip.duration,
            "chosen_kind": chosen_kind, "rejected_kind": rejected_kind, "audio_event": clip.ann.audio_event,
            "visual_event": clip.ann.visual_event}
    meta.update(extra)
    return meta


def _pair(source: str, k: int, clip: Clip, spec: Intervention, chosen: str, rejected: str, meta: dict,
          seed: int) -> PreferencePair:
    return PreferencePair(id=f"{source}-{k:05d}-{clip.id}", source=source, source_id=clip.id, video=clip.video,
                          prompt=clip_prompt(clip.id, seed), chosen=chosen, rejected=rejected,
                          chosen_intervention=spec, rejected_intervention=spec, meta=meta)


def _desync_claim(clip: Clip, inputs: BuildInputs, rng: np.random.Generator) -> tuple[str, str, float]:
    """A wrong "delayed/early" claim for a clip whose audio is in sync (offset drawn like a real shift)."""
    off = draw_offset(inputs.shift, clip, rng)
    if off is None:  # too short to shift for real, but a false claim may still name a plausible offset
        lo, hi = inputs.shift.bands[0]
        off = float(rng.choice([-1, 1])) * round(float(rng.uniform(lo, hi)), 1)
    kind = "delayed" if off > 0 else "early"
    return kind, answer(kind, clip.facts(), rng, offset=off), off


# ----------------------------------------------------------------------------------------------------------------
# clip sources


def _original_pair(source: str, k: int, clip: Clip, inputs: BuildInputs, rng: np.random.Generator) -> PreferencePair:
    chosen = answer("synced", clip.facts(), rng)
    rkind, rejected, claimed = _desync_claim(clip, inputs, rng)
    return _pair(source, k, clip, ORIGINAL, chosen, rejected,
                 _meta(clip, ORIGINAL, "synced", rkind, claimed_offset=claimed), inputs.seed)


@register("ctp")
def build_ctp(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """Counterfactual temporal preferences: conditions cycle original, delay, early (the feasible sign when only
    one fits). Chosen states the true relation with its numbers; rejected claims sync (shifted clips, half the
    time) or the wrong direction / a desync (originals)."""
    clips, _ = shift_eligible(inputs.clips, inputs.shift)
    _need("ctp", clips, n)
    if inputs.questions == "closed_set":
        return _closed_set_pairs("ctp", clips, inputs, n, rng)
    out = []
    for k, clip in _cycle(clips, n, rng):
        if k % 3 == 0:
            out.append(_original_pair("ctp", k, clip, inputs, rng))
            continue
        off = draw_offset(inputs.shift, clip, rng, prefer=1 if k % 3 == 1 else -1)
        spec = shift_intervention(off, inputs.shift.gap)
        ckind = "delayed" if off > 0 else "early"
        chosen = answer(ckind, clip.facts(), rng, offset=off)
        if rng.random() < 0.5:
            rkind, rejected = "synced", answer("synced", clip.facts(), rng)
        else:  # wrong direction, same magnitude
            rkind = "early" if off > 0 else "delayed"
            rejected = answer(rkind, clip.facts(), rng, offset=-off)
        out.append(_pair("ctp", k, clip, spec, chosen, rejected, _meta(clip, spec, ckind, rkind), inputs.seed))
    return out


@register("orig_sync")
def build_orig_sync(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """Originals only: the synced answer over a desynchronised claim."""
    _need("orig_sync", inputs.clips, n)
    if inputs.questions == "closed_set":
        return _closed_set_pairs("orig_sync", inputs.clips, inputs, n, rng)
    return [_original_pair("orig_sync", k, c, inputs, rng) for k, c in _cycle(inputs.clips, n, rng)]


@register("mute")
def build_mute(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """Muted clips: identifying silence over describing the expected sound (the hallucination)."""
    _need("mute", inputs.clips, n)
    if inputs.questions == "closed_set":
        return _closed_set_pairs("mute", inputs.clips, inputs, n, rng)
    spec = Intervention(kind="mute")
    out = []
    for k, clip in _cycle(inputs.clips, n, rng):
        out.append(_pair("mute", k, clip, spec, answer("silent", clip.facts(), rng),
                         answer("synced", clip.facts(), rng), _meta(clip, spec, "silent", "synced"), inputs.seed))
    return out


@register("swap")
def build_swap(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """Swapped tracks (donor with a different audio event): flagging the mismatch and naming what is heard, over
    accepting the heard sound as the visible event's."""
    eligible = _swap_pool(inputs)
    _need("swap", eligible, n)
    if inputs.questions == "closed_set":
        return _closed_set_pairs("swap", eligible, inputs, n, rng)
    out = []
    for k, clip in _cycle(eligible, n, rng):
        donors = donors_for(clip, inputs.clips)
        donor = donors[int(rng.integers(len(donors)))]
        spec = Intervention(kind="swap", donor=donor.id, donor_video=donor.video)
        heard = donor.ann.audio_event
        out.append(_pair("swap", k, clip, spec, answer("mismatched", clip.facts(), rng, heard_event=heard),
                         answer("false_match", clip.facts(), rng, heard_event=heard),
                         _meta(clip, spec, "mismatched", "false_match", donor_audio_event=heard), inputs.seed))
    return out


# ----------------------------------------------------------------------------------------------------------------
# closed-set questions (the Thud multiple-choice format) and single-modality perception questions

# Per source: the Thud dimensions its questions ask about and the conditions it cycles through (the chosen label of
# each). Every source asks about original clips too (ctp one time in three, mute and swap one in two), so the
# question being asked never tells which answer is right: only the audio does.
CLOSED_SET_PLAN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ctp": (("temporal_sync",), ("synced", "delayed", "early")),
    "orig_sync": (("temporal_sync", "audio_existence", "sound_consistency"), ("synced",)),
    "mute": (("audio_existence",), ("synced", "silent")),
    "swap": (("sound_consistency",), ("synced", "mismatched")),
}
# The wrong answer an original clip's pair rejects, per dimension: what its intervened condition would be.
_ORIGINAL_REJECTED = {"temporal_sync": ("delayed", "early"), "audio_existence": ("silent",),
                      "sound_consistency": ("mismatched",)}


def _closed_set_pairs(source: str, clips: list[Clip], inputs: BuildInputs, n: int,
                      rng: np.random.Generator) -> list[PreferencePair]:
    """``n`` pairs of ``source`` in the closed-set format: the Thud question of one dimension (same text for every
    condition of a clip), the right option's text over a wrong option's (intervened clips: mostly the "synced"
    answer a model gives when it answers from the picture; shifts: else the wrong direction)."""
    from eval.thud.prompts import OPTION_TEXT, closed_set_question

    dims, labels = CLOSED_SET_PLAN[source]
    out = []
    for k, clip in _cycle(clips, n, rng):
        label, dim = labels[k % len(labels)], dims[(k // len(labels)) % len(dims)]
        spec, extra = ORIGINAL, {}
        if label == "synced":
            wrong = _ORIGINAL_REJECTED[dim]
            rejected = wrong[int(rng.integers(len(wrong)))]
        elif label in ("delayed", "early"):
            off = draw_offset(inputs.shift, clip, rng, prefer=1 if label == "delayed" else -1)
            spec = shift_intervention(off, inputs.shift.gap)
            label = "delayed" if off > 0 else "early"  # the feasible sign when only one fits
            rejected = "synced" if rng.random() < 0.5 else ("early" if off > 0 else "delayed")
        elif label == "silent":
            spec, rejected = Intervention(kind="mute"), "synced"
        else:
            donors = donors_for(clip, inputs.clips)
            donor = donors[int(rng.integers(len(donors)))]
            spec, rejected = Intervention(kind="swap", donor=donor.id, donor_video=donor.video), "synced"
            extra = {"donor_audio_event": donor.ann.audio_event}
        q = closed_set_question(clip.id, dim, inputs.seed)
        out.append(PreferencePair(
            id=f"{source}-{k:05d}-{clip.id}", source=source, source_id=clip.id, video=clip.video, prompt=q.prompt,
            chosen=OPTION_TEXT[label], rejected=OPTION_TEXT[rejected], chosen_intervention=spec,
            rejected_intervention=spec, meta=_meta(clip, spec, label, rejected, dimension=dim, **extra)))
    return out


# One question per modality and aspect; the text depends on nothing but the aspect.
PERCEPTION_QUESTIONS: dict[str, str] = {
    "object": "Look at the video only. Which object falls to the ground?",
    "impact_time": "Look at the video only. At what time does the object hit the ground?",
    "sound": "Listen to the audio only. What sound do you hear?",
    # The heard object named in the words that name the seen one: both senses then answer in one vocabulary.
    "sound_source": "Listen to the audio only. Which object do you hear falling?",
    "sound_time": "Listen to the audio only. At what time does the sound start?",
}
PERCEPTION_CONDITIONS = ("original", "shift", "mute", "swap")
_SILENT = "Nothing: the audio is silent."


def _at(t: float) -> str:
    return f"At about {fmt_seconds(t)} s."


@register("perception")
def build_perception(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """Questions about one modality at a time, as a pretrained omni model can already answer them: which object
    falls and when it lands (video), which sound is heard and when it starts (audio), under every condition
    (original, shifted, muted, swapped), so the audio answers can only come from the audio. Chosen: the truth;
    rejected: another object or sound, a time off by a second or more, or silence / a sound where there is none."""
    return _perception_pairs("perception", list(PERCEPTION_QUESTIONS), inputs, n, rng)


@register("perception_what")
def build_perception_what(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """The identity questions of :func:`build_perception` only (which object falls, which sound is heard, which
    object is heard): a tiny random-weight thinker taught every question at once learns the times and the silence
    but stays at chance on both identities, while on these alone it learns them within a few hundred steps. Half
    the clips have their track swapped, so the sound heard is another object's as often as the seen one's: the
    picture cannot answer."""
    return _perception_pairs("perception_what", ["object", "sound", "sound_source"], inputs, n, rng,
                             conditions=("swap", "original", "swap", "mute"))


def _perception_pairs(source: str, aspects: list[str], inputs: BuildInputs, n: int, rng: np.random.Generator,
                      conditions: tuple[str, ...] = PERCEPTION_CONDITIONS) -> list[PreferencePair]:
    eligible = [c for c in inputs.clips if donors_for(c, inputs.clips)]
    _need(source, eligible, n)
    out = []
    for k, clip in _cycle(eligible, n, rng):
        cond = conditions[k % len(conditions)]
        aspect = aspects[(k // len(conditions)) % len(aspects)]
        other = donors_for(clip, inputs.clips)
        other = other[int(rng.integers(len(other)))]  # another class: the swap donor and the wrong object
        spec = ORIGINAL
        heard, t_sound, source_heard = clip.ann.audio_event, clip.ann.t_audio, clip.ann.visual_event
        if cond == "shift":
            off = draw_offset(inputs.shift, clip, rng)
            if off is not None:
                spec, t_sound = shift_intervention(off, inputs.shift.gap), round(clip.ann.t_audio + off, 6)
        elif cond == "mute":
            spec, heard, t_sound, source_heard = Intervention(kind="mute"), "", None, ""
        elif cond == "swap":
            spec = Intervention(kind="swap", donor=other.id, donor_video=other.video)
            heard, t_sound, source_heard = other.ann.audio_event, other.ann.t_audio, other.ann.visual_event
        wrong_dt = float(rng.choice([-1, 1])) * round(float(rng.uniform(1.0, 2.0)), 1)
        if aspect == "object":
            chosen, rejected = _sentence(_cap_first(clip.ann.visual_event)), _sentence(_cap_first(other.ann.visual_event))
        elif aspect == "impact_time":
            chosen, rejected = _at(clip.ann.t_visual), _at(max(0.0, clip.ann.t_visual + wrong_dt))
        elif aspect == "sound":
            chosen, rejected = _heard_pair(heard, clip.ann.audio_event, other.ann.audio_event)
        elif aspect == "sound_source":
            chosen, rejected = _heard_pair(source_heard, clip.ann.visual_event, other.ann.visual_event)
        else:
            chosen = _at(t_sound) if t_sound is not None else _SILENT
            rejected = _at(max(0.0, (t_sound if t_sound is not None else clip.ann.t_visual) + wrong_dt))
        out.append(PreferencePair(
            id=f"{source}-{k:05d}-{clip.id}", source=source, source_id=clip.id, video=clip.video,
            prompt=PERCEPTION_QUESTIONS[aspect], chosen=chosen, rejected=rejected, chosen_intervention=spec,
            rejected_intervention=spec,
            meta=_meta(clip, spec, aspect, aspect, aspect=aspect, heard_event=heard, heard_time=t_sound)))
    return out


def _heard_pair(heard: str, own: str, other: str) -> tuple[str, str]:
    """Chosen and rejected answers about what is heard: the truth (or silence), against the clip's own event when
    the track is silent or another's, else against the other clip's."""
    chosen = _sentence(_cap_first(heard)) if heard else _SILENT
    return chosen, _sentence(_cap_first(own if not heard or heard != own else other))


def _cap_first(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


# ----------------------------------------------------------------------------------------------------------------
# FineVideo and external sources


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _snippet(text: str, words: int = 14) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def _lc(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _visual_text(seg: Segment) -> str:
    acts = [_sentence(a.description) for a in seg.activities()]
    notes = [_sentence(m.text) for m in seg.scene.narrative if m.text.strip()]
    return " ".join(acts) or " ".join(notes[:2]) or _sentence(seg.scene.title) or "The scene continues."


def _relation_note(seg: Segment) -> str:
    """What the annotator's audio-visual correlation score says, in words (FineVideo: 0 = the speech is unrelated
    to what is seen, 1 = closely related)."""
    score = seg.scene.audio_visual_correlation
    if score is None:
        return ""
    return ("what is said matches what is shown" if score >= 0.5 else
            "what is said is not about what is shown")


def _audio_text(lines: list[str], note: str) -> str:
    parts = []
    if lines:
        parts.append("someone says: \"" + _snippet(" ".join(lines), 30) + "\"")
    if note:
        parts.append(note)
    return _sentence("; ".join(parts)) if parts else ""


def _fv_record(source: str, k: int, seg: Segment, prompt: str, chosen: str, rejected: str, meta: dict):
    meta = {"condition": "original", "scene_start": seg.scene.start, "span": list(seg.span), "offset": seg.offset,
            **meta}
    return PreferencePair(id=f"{source}-{k:05d}-{seg.clip.id}", source=source, source_id=seg.clip.id,
                          video=seg.video, prompt=prompt, chosen=chosen, rejected=rejected, meta=meta)


@register("fv_d")
def build_fv_d(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """FineVideo segment descriptions: what is seen and heard, over the same description with the audible part
    contradicted (segments with speech) or taken from another segment (segments without)."""
    speaking = [s for s in inputs.segments if s.speech()]
    eligible = _fv_d_pool(inputs)
    _need("fv_d", eligible, n)
    out = []
    for k, seg in _cycle(eligible, n, rng):
        visual = _visual_text(seg)
        audio = _audio_text(seg.speech(), _relation_note(seg)) or pick(FV_TEMPLATES["no_speech"], rng)
        if seg.speech():
            fake, how = pick(FV_TEMPLATES["no_speech"], rng), "contradicted"
        else:
            other = [s for s in speaking if s.id != seg.id]
            fake, how = _audio_text(other[int(rng.integers(len(other)))].speech(), ""), "other_segment"
        tmpl = pick(FV_TEMPLATES["describe"], rng)
        fill = lambda a: tmpl.format(visual=visual, visual_lc=visual[:1].lower() + visual[1:], audio=a)  # noqa: E731
        prompt = FV_PROMPTS["describe"][k % len(FV_PROMPTS["describe"])]
        out.append(_fv_record("fv_d", k, seg, prompt, fill(audio), fill(fake), {"rejected_kind": how}))
    return out


@register("fv_a_l")
def build_fv_a_l(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """FineVideo audio-visual multiple choice with a long-form answer: the grounded explanation + the right option,
    over the same explanation + a wrong option. Distractors are speech from other segments."""
    pool_texts = _speech_pool(inputs)
    eligible = _fv_a_l_pool(inputs)
    _need("fv_a_l", eligible, n)
    out = []
    for k, seg in _cycle(eligible, n, rng):
        right = _snippet(" ".join(seg.speech()))
        others = [t for t in pool_texts if t != right]
        picked = [others[int(i)] for i in rng.permutation(len(others))[:3]]
        options = [right, *picked]
        order = rng.permutation(len(options))
        options = [options[int(i)] for i in order]
        correct = options.index(right)
        wrong = int(rng.choice([i for i in range(len(options)) if i != correct]))
        acts = seg.activities()
        act = _lc(acts[int(rng.integers(len(acts)))].description)
        question = pick(FV_TEMPLATES["av_question"], rng).format(activity=act)
        letters = "ABCDEFGH"
        prompt = question + "\n" + "\n".join(f"({letters[i]}) \"{o}\"" for i, o in enumerate(options))
        expl = f"While {act}, the audio has someone saying \"{right}\"."
        if _relation_note(seg):
            expl += " " + _sentence(_relation_note(seg)[:1].upper() + _relation_note(seg)[1:])
        tmpl = pick(FV_TEMPLATES["av_answer"], rng)
        chosen = tmpl.format(explanation=expl, letter=letters[correct], option=f"\"{options[correct]}\"")
        rejected = tmpl.format(explanation=expl, letter=letters[wrong], option=f"\"{options[wrong]}\"")
        out.append(_fv_record("fv_a_l", k, seg, prompt, chosen, rejected,
                              {"answer_index": correct, "rejected_index": wrong}))
    return out


@register("fv_t")
def build_fv_t(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """FineVideo temporal localisation: when is a given line of speech heard? Chosen states the line's time range
    in the clip (from the transcript's timestamps), rejected the range of another line of the same clip."""
    eligible = _fv_t_pool(inputs)
    _need("fv_t", eligible, n)
    out = []
    for k, seg in _cycle(eligible, n, rng):
        lines = seg.lines()
        i = int(rng.integers(len(lines)))
        j = int(rng.choice([x for x in range(len(lines)) if x != i]))
        tmpl = pick(FV_TEMPLATES["localise"], rng)
        say = lambda ln: tmpl.format(start=fmt_seconds(seg.local(ln.start)),  # noqa: E731
                                     end=fmt_seconds(seg.local(ln.end)))
        prompt = pick(FV_PROMPTS["localise"], rng).format(quote=_snippet(lines[i].text))
        out.append(_fv_record("fv_t", k, seg, prompt, say(lines[i]), say(lines[j]),
                              {"t_start": seg.local(lines[i].start), "t_end": seg.local(lines[i].end),
                               "rejected_start": seg.local(lines[j].start)}))
    return out


def _heard_during(seg: Segment, act: FVActivity) -> str:
    """The speech that overlaps a timed activity of the segment ('' when none does)."""
    return " ".join(s.text.strip() for s in seg.lines() if s.end > act.start and s.start < act.end)


@register("fv_c")
def build_fv_c(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """FineVideo audio-visual correspondence: what is heard while a given activity is shown? Chosen quotes the
    speech that overlaps the activity's time span, rejected speech from another moment or segment."""
    pool = _speech_pool(inputs)
    eligible = _fv_c_pool(inputs)
    _need("fv_c", eligible, n)
    out = []
    for k, (seg, act) in _cycle(eligible, n, rng):
        right = _snippet(_heard_during(seg, act))
        others = [t for t in pool if t != right]
        wrong = others[int(rng.integers(len(others)))]
        activity = _lc(act.description)
        tmpl = pick(FV_TEMPLATES["correspond"], rng)
        prompt = pick(FV_TEMPLATES["correspond_question"], rng).format(activity=activity)
        out.append(_fv_record("fv_c", k, seg, prompt, tmpl.format(activity=activity, quote=right),
                              tmpl.format(activity=activity, quote=wrong),
                              {"activity_start": seg.local(act.start), "activity_end": seg.local(act.end)}))
    return out


@register("llava_video")
def build_llava_video(inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[PreferencePair]:
    """An external video preference set, as given (prompt, chosen, rejected, video)."""
    _need("llava_video", inputs.llava, n)
    return [PreferencePair(id=f"llava_video-{k:05d}-{it.id}", source="llava_video", source_id=it.id,
                           video=str(it.path), prompt=it.record.prompt, chosen=it.record.chosen,
                           rejected=it.record.rejected, meta={"condition": "original"})
            for k, it in _cycle(inputs.llava, n, rng)]


# What each builder draws from: the same filters the builders apply, so `inspect` can count them before a build.
def _swap_pool(inputs: BuildInputs) -> list[Clip]:
    return [c for c in inputs.clips if donors_for(c, inputs.clips)]


def _speech_pool(inputs: BuildInputs) -> list[str]:
    return sorted({_snippet(" ".join(s.speech())) for s in inputs.segments if s.speech()})


def _fv_d_pool(inputs: BuildInputs) -> list[Segment]:
    speaking = any(s.speech() for s in inputs.segments)
    return [s for s in inputs.segments if s.speech() or speaking]


def _fv_a_l_pool(inputs: BuildInputs) -> list[Segment]:
    many = len(_speech_pool(inputs)) >= 2
    return [s for s in inputs.segments if s.speech() and s.activities() and many]


def _fv_t_pool(inputs: BuildInputs) -> list[Segment]:
    return [s for s in inputs.segments if len(s.lines()) >= 2]


def _fv_c_pool(inputs: BuildInputs) -> list[tuple[Segment, FVActivity]]:
    pool = _speech_pool(inputs)
    timed = [(s, a) for s in inputs.segments for a in s.activities()
             if a.start is not None and a.end is not None and _heard_during(s, a)]
    return [(s, a) for s, a in timed if any(t != _snippet(_heard_during(s, a)) for t in pool)]


ELIGIBLE: dict[str, Callable[[BuildInputs], list]] = {
    "ctp": lambda i: shift_eligible(i.clips, i.shift)[0], "orig_sync": lambda i: i.clips, "mute": lambda i: i.clips,
    "swap": _swap_pool, "fv_d": _fv_d_pool, "fv_a_l": _fv_a_l_pool, "fv_t": _fv_t_pool, "fv_c": _fv_c_pool,
    "llava_video": lambda i: i.llava,
}


def eligible_counts(inputs: BuildInputs) -> dict[str, int]:
    """How many clips, segments (or segment moments) each source can draw from; 0 = the source cannot be built."""
    return {name: len(pool(inputs)) for name, pool in ELIGIBLE.items()}


def build_pairs(source: str, inputs: BuildInputs, n: int, rng: np.random.Generator,
                contrast: bool = True) -> list[PreferencePair]:
    """Exactly ``n`` pairs of ``source`` (a key of :data:`PAIR_BUILDERS`), ``inputs.audio_contrast`` of them
    audio-contrast pairs when ``contrast`` and the source allows (:func:`audio_contrast`). Raises BuildError /
    KeyError."""
    if source not in PAIR_BUILDERS:
        raise KeyError(f"unknown source '{source}'; known: {sorted(PAIR_BUILDERS)}")
    if n <= 0:
        return []
    pairs = PAIR_BUILDERS[source](inputs, n, rng)
    if len(pairs) != n:
        raise RuntimeError(f"builder '{source}' returned {len(pairs)} items instead of {n}; that is a bug in it")
    if contrast and inputs.audio_contrast > 0 and source in AUDIO_CONTRAST_SOURCES:
        # Its own stream, spawned without drawing from ``rng``: the answer pairs are the same with or without it.
        pairs = audio_contrast(pairs, inputs, rng.spawn(1)[0])
    return pairs


# Sources whose pairs may contrast two tracks under one answer. orig_sync stays as it is: it is the control
# without counterfactual audio (a preference between answers on the original track only).
AUDIO_CONTRAST_SOURCES = ("ctp", "mute", "swap")


def audio_contrast(pairs: list[PreferencePair], inputs: BuildInputs,
                   rng: np.random.Generator) -> list[PreferencePair]:
    """A seeded share ``inputs.audio_contrast`` of ``pairs`` made audio-contrast pairs: the chosen answer on both
    sides, the rejected side hearing a track that answer is wrong for (:func:`wrong_track`). Both sides then
    differ only in their audio, so the preference cannot be met by favouring one answer's text: only by telling
    the two tracks apart against the picture. A pair with no such track (no donor, no feasible shift) stays."""
    k = round(inputs.audio_contrast * len(pairs))
    picked = set(rng.choice(len(pairs), size=k, replace=False).tolist()) if k else set()
    clips = {c.id: c for c in inputs.clips}
    out = []
    for i, p in enumerate(pairs):
        spec = wrong_track(p, clips[p.source_id], inputs, rng) if i in picked else None
        if spec is None:
            out.append(p)
            continue
        meta = {**p.meta, "rejected_kind": p.meta["chosen_kind"], "contrast": "audio",
                "rejected_condition": spec.kind}
        out.append(p.model_copy(update={"rejected": p.chosen, "rejected_intervention": spec, "meta": meta}))
    return out


def wrong_track(pair: PreferencePair, clip: Clip, inputs: BuildInputs,
                rng: np.random.Generator) -> Intervention | None:
    """A track the pair's chosen answer is wrong for: the original track when the chosen side is intervened, else
    the intervention its wrong answer claims (a shift for delayed/early, mute for silent, a donor of another
    category for a mismatch); None when the clip has none (too short to shift, no donor)."""
    if pair.chosen_intervention.kind != "original":
        return ORIGINAL
    claim = pair.meta.get("rejected_kind")
    if claim == "silent":
        return Intervention(kind="mute")
    if claim in ("mismatched", "false_match"):
        donors = donors_for(clip, inputs.clips)
        if not donors:
            return None
        donor = donors[int(rng.integers(len(donors)))]
        return Intervention(kind="swap", donor=donor.id, donor_video=donor.video)
    if claim in ("delayed", "early"):  # any feasible shift makes "in sync" wrong; the claimed sign when it fits
        off = draw_offset(inputs.shift, clip, rng, prefer=1 if claim == "delayed" else -1)
        return None if off is None else shift_intervention(off, inputs.shift.gap)
    return None


def sft_samples(source: str, inputs: BuildInputs, n: int, rng: np.random.Generator) -> list[SFTSample]:
    """Exactly ``n`` SFT samples of ``source``: the chosen side of freshly drawn pairs, as single-turn samples
    with the chosen side's audio condition (so conditions cycle like the pairs: original, delayed, early, ...)."""
    out = []
    for p in build_pairs(source, inputs, n, rng, contrast=False):
        out.append(SFTSample(id="sft-" + p.id, source=p.source, source_id=p.source_id, video=p.video, start=p.start,
                             end=p.end, prompt=p.prompt, answer=p.chosen, intervention=p.chosen_intervention,
                             meta=p.meta))
    return out


def resolve_video(base: Path, video: str) -> str:
    """Absolute path of a record's video (relative paths are relative to the dataset folder)."""
    p = Path(video)
    return str(p if p.is_absolute() else (base / p).resolve())
