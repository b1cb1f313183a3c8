"""Input conditions for any audio-bearing closed-set suite: is a right answer heard, or guessed from the text?

"All That Glitters Is Not Audio: Rethinking Text Priors and Audio Reliance in Audio-Language Evaluation" found that
models keep 60-72 % of their audio-benchmark score with no audio at all, and that of the items that do need audio
only 3.0-4.2 % need the whole clip. To measure the same on any suite, each of its questions is asked again under:

- ``full``: the audio as it is;
- ``no_audio/omitted``: the audio input left out (no audio placeholder in the prompt; a video keeps its frames);
- ``no_audio/silence``: the audio replaced by digital silence of the same length (the placeholder stays);
- ``fragment/<w>s/<s>s/<fill>``: one window of ``w`` seconds at a time (windows every ``s`` seconds, the last one
  flush with the clip's end), the rest silenced (``fill: silence``, positions kept) or cut out (``fill: cut``).

The two no-audio variants are reported apart because models treat a missing input and a silent one differently.
A suite hands :func:`evaluate_conditions` its questions as :class:`ConditionItem` records; every answer is scored
by option log-likelihood and cached like the suite's own predictions. The metrics are pure functions of the
right/wrong table (:mod:`eval.reliance`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

NoAudioVariant = Literal["omitted", "silence"]
Fill = Literal["silence", "cut"]
FULL = "full"


class Fragment(BaseModel):
    """Windows of ``window`` seconds every ``stride`` seconds (default: back to back); the rest silenced or cut."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: float = Field(gt=0, description="seconds of audio kept per fragment")
    stride: float | None = Field(None, gt=0, description="seconds between window starts (default: window)")
    fill: Fill = Field("silence", description="silence: rest zeroed, positions kept; cut: only the window is given")

    @property
    def step(self) -> float:
        return self.stride or self.window

    @property
    def name(self) -> str:
        return f"fragment/{self.window:g}s/{self.step:g}s/{self.fill}"


class InputConditions(BaseModel):
    """A suite's ``input_conditions`` option. ``full`` is always evaluated; absent option = no extra cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_audio: list[NoAudioVariant] = Field(default_factory=lambda: ["omitted", "silence"],
                                           description="no-audio variants, each reported apart")
    fragments: list[Fragment] = Field(default_factory=list, description="fragment settings (window, stride, fill)")

    @model_validator(mode="after")
    def _check(self) -> "InputConditions":
        if len(set(self.no_audio)) != len(self.no_audio):
            raise ValueError(f"no_audio: {self.no_audio} lists a variant twice")
        names = [f.name for f in self.fragments]
        if len(set(names)) != len(names):
            raise ValueError(f"fragments: {names} lists a setting twice")
        if self.fragments and not self.no_audio:
            # Fragment sufficiency is measured on the items that need audio, which only no_audio can tell.
            raise ValueError("fragments need at least one no_audio variant (they are scored on the items that are "
                             "right with full audio and wrong without)")
        return self


@dataclass(frozen=True)
class InputCondition:
    """One concrete way an item's audio is shown. ``window`` is (start, end) in seconds for fragments."""

    name: str
    kind: Literal["full", "no_audio", "fragment"]
    variant: str = ""
    window: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        """Unique per item: the setting name plus the window."""
        return self.name if self.window is None else f"{self.name}@{self.window[0]:.3f}-{self.window[1]:.3f}"


def windows(duration: float, fragment: Fragment) -> list[tuple[float, float]]:
    """Fragment windows of a clip: starts every ``stride`` seconds, plus one flush with the end when the strides
    leave a tail uncovered; a clip no longer than the window is one window, the whole clip."""
    w, s = fragment.window, fragment.step
    if duration <= w:
        return [(0.0, float(duration))]
    starts = list(np.arange(0.0, duration - w + 1e-9, s))
    if starts[-1] + w < duration - 1e-9:
        starts.append(duration - w)
    return [(round(float(a), 6), round(float(a) + w, 6)) for a in starts]


def expand(spec: InputConditions, duration: float) -> list[InputCondition]:
    """Every condition an item of ``duration`` seconds is asked under: full, the no-audio variants, the windows."""
    out = [InputCondition(FULL, "full")]
    out += [InputCondition(f"no_audio/{v}", "no_audio", v) for v in spec.no_audio]
    for frag in spec.fragments:
        out += [InputCondition(frag.name, "fragment", frag.fill, win) for win in windows(duration, frag)]
    return out


def condition_audio(audio: np.ndarray, sample_rate: int, cond: InputCondition) -> np.ndarray | None:
    """The waveform shown under ``cond``; None means no audio input at all (``no_audio/omitted``)."""
    if cond.kind == "full":
        return audio
    if cond.kind == "no_audio":
        return None if cond.variant == "omitted" else np.zeros_like(audio)
    a, b = (int(round(t * sample_rate)) for t in cond.window)
    b = max(b, a + 1)
    if cond.variant == "cut":
        return np.ascontiguousarray(audio[a:b])
    out = np.zeros_like(audio)
    out[a:b] = audio[a:b]
    return out


@dataclass(frozen=True)
class ConditionItem:
    """One closed-set question a suite asks under every input condition.

    ``load`` returns (frames or None, mono waveform at the media sample rate); it is called once per item.
    ``correct`` holds every option index that counts as right (a Thud question may accept several).
    """

    item_id: str
    prompt: str
    options: tuple[str, ...]
    correct: frozenset[int]
    duration: float
    load: Callable[[], tuple[np.ndarray | None, np.ndarray]]
    inputs: Any = None  # content identity of the media behind ``load`` (part of the prediction's cache key)


def evaluate_conditions(ctx, suite: str, items: Sequence[ConditionItem], spec: InputConditions,
                        normalise: bool = False) -> dict:
    """Ask every item under every condition of ``spec``; returns the metrics of :func:`eval.reliance.summarise`
    plus ``predictions`` (path of ``<out_dir>/<suite>/input_conditions.jsonl``) and ``figure``.

    Predictions are cached under ``<suite>.conditions``; items owned by other data-parallel shards are read from
    the cache when there (the merge pass completes them).
    """
    from eval.reliance import plot_fragments, summarise
    from eval.scoring import score_options

    rank, world = ctx.shard
    table: dict[str, dict[str, list[bool]]] = {}
    rows = []
    unit = 0
    for item in items:
        media: list = []

        def compute(cond: InputCondition, item=item, media=media) -> dict:
            if not media:
                media.append(item.load())
            frames, audio = media[0]
            shown = condition_audio(audio, ctx.media.sample_rate, cond)
            s = score_options(ctx.model, ctx.processor, ctx.media, item.prompt, list(item.options), frames=frames,
                              audio=shown)
            return {"logprob": list(s.logprob), "n_tokens": list(s.n_tokens)}

        for cond in expand(spec, item.duration):
            settings = {"condition": cond.key, "prompt": item.prompt, "options": list(item.options)}
            owned = unit % world == rank
            unit += 1
            value = ctx.cached(f"{suite}.conditions", item.item_id, settings, lambda c=cond: compute(c),
                               item.inputs) if owned else ctx.lookup(f"{suite}.conditions", item.item_id, settings,
                                                                     item.inputs)
            if value is None:
                continue
            score = np.array(value["logprob"]) / (np.array(value["n_tokens"]) if normalise else 1)
            pred = int(np.argmax(score))
            hit = pred in item.correct
            table.setdefault(cond.name, {}).setdefault(item.item_id, []).append(hit)
            rows.append({"item_id": item.item_id, "condition": cond.name, "window": cond.window, "pred": pred,
                         "correct": sorted(item.correct), "hit": hit})
    result = summarise(table, spec, seed=ctx.seed)
    out = ctx.out_dir / suite
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "input_conditions.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(path)
        result["predictions"] = str(path)
        fig = plot_fragments(result, out / "figures" / "accuracy_vs_fragment_length.png", suite)
        if fig is not None:
            result["figure"] = str(fig)
    return result
