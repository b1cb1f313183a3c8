"""Suite ``hierarchy``: does reasoning about concepts survive when a concept is heard instead of read?

After "What do MLLMs hear? Examining reasoning with text and sound components in Multimodal Large Language
Models": for concept pairs (A, B) related as synonyms, as hyponym/hypernym, or unrelated, the model is asked whether
A is the same as / a kind of B under three conditions:

- ``text``: both concepts as words;
- ``mixed``: A as a clip, B as a word;
- ``audio``: A and B both as clips, joined by half a second of silence into one track.

The answer ("yes"/"no") is scored by option log-likelihood; right is "yes" for synonyms and hypernyms, "no" for
unrelated pairs (asked both ways). Accuracy per relation and condition, with n and a Wilson 95 % interval. The
paper found text-only reasoning robust for synonyms and hypernym relations falling apart once audio is involved.

Pairs come from a JSONL of ``{"a", "b", "relation": synonym|hypernym|unrelated}`` (default: the shipped
``data_builders/assets/concept_pairs.jsonl``, relations interleaved so that ``limit: 3k`` asks k pairs of each);
clips of a concept are those of the labelled folder (as for
``caption_classification``) that carry it as a label. A synonym B that no clip carries is heard as another clip of A.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data_builders.annotations import read_jsonl_models
from eval.context import EvalContext, decoded_audio, media_identity

SUITE = "hierarchy"
Relation = Literal["synonym", "hypernym", "unrelated"]
Probe = Literal["text", "mixed", "audio"]
GAP_SECONDS = 0.5
ANSWERS = ("yes", "no")
# What is asked per relation: synonyms "same", hypernyms "kind"; an unrelated pair is asked both ways so the
# question's wording never gives the answer away.
ASKED: dict[str, tuple[str, ...]] = {"synonym": ("same",), "hypernym": ("kind",), "unrelated": ("same", "kind")}
QUESTIONS: dict[tuple[str, str], str] = {
    ("text", "same"): "Is the sound of {a} the same as the sound of {b}?",
    ("text", "kind"): "Is the sound of {a} a kind of {b}?",
    ("mixed", "same"): "Listen to the audio. Is the sound in the clip the same as the sound of {b}?",
    ("mixed", "kind"): "Listen to the audio. Is the sound in the clip a kind of {b}?",
    # Two clips can only show instances: "kind" asks whether both belong to the same broader kind.
    ("audio", "same"): "The audio holds two sounds separated by a short silence. Are the two sounds the same "
                       "sound?",
    ("audio", "kind"): "The audio holds two sounds separated by a short silence. Are the two sounds the same kind "
                       "of sound?",
}
SUFFIX = " Answer yes or no."


class HierarchyOptions(BaseModel):
    """Options of the ``hierarchy`` suite."""

    model_config = ConfigDict(extra="forbid")

    pairs: str | None = Field(None, description="concept pairs JSONL (default: the shipped set)")
    data: str | None = Field(None, description="labelled folder of clips (default: the offline sound world)")
    probes: list[Probe] = Field(default_factory=lambda: ["text", "mixed", "audio"], min_length=1)
    clips_per_pair: int = Field(1, ge=1, description="clips of A asked about per pair (seeded choice)")
    limit: int | None = Field(None, ge=1, description="only the first N pairs")
    world_per_class: int = Field(2, ge=1, description="offline world: clips per sound class")


class ConceptPair(BaseModel):
    """One line of a concept-pairs JSONL: concepts ``a`` and ``b`` and how they relate."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    a: str
    b: str
    relation: str


def read_pairs(path: str | Path) -> list[ConceptPair]:
    """Concept pairs of a JSONL. Raises ValueError naming the line of a bad record."""
    path = Path(path)
    pairs = []
    for n, pair in read_jsonl_models(path, ConceptPair, "concept pairs"):
        if pair.relation not in ASKED:
            raise ValueError(f"{path}:{n}: relation {pair.relation!r}; choose from {sorted(ASKED)}")
        pairs.append(pair)
    return pairs


def _clips_of(concept: str, clips) -> list:
    return [c for c in clips if concept in c.labels]


def run(ctx: EvalContext) -> dict:
    """Ask every pair under every probe; returns ``{"metrics", "accuracy": {relation: {probe: ...}}, "skipped",
    "settings"}``.

    Raises:
        ValueError: bad pairs file, or no pair with clips to ask about.
    """
    from data_builders.sound_world import CONCEPT_PAIRS, default_world
    from eval.caption_classification import read_labelled
    from eval.scoring import SharedMedia, score_options
    from eval.spectrogram_baselines import Accuracy

    opts = HierarchyOptions.model_validate(ctx.options)
    pairs = read_pairs(opts.pairs or CONCEPT_PAIRS)[:opts.limit]
    folder = Path(opts.data) if opts.data else default_world(opts.world_per_class, ctx.seed)
    clips, _ = read_labelled(folder)
    if {"mixed", "audio"} & set(opts.probes) and not ctx.takes_audio():
        raise ValueError("hierarchy probes 'mixed' and 'audio' need a model that takes audio; use probes: [text]")
    sr = ctx.media.sample_rate
    audio = {}
    shared = SharedMedia()  # the questions asked about one clip (or none) encode it once

    def wave(clip) -> np.ndarray:
        if clip.file not in audio:
            audio[clip.file] = decoded_audio(clip.file, sr, max_seconds=ctx.media.max_clip_seconds)
        return audio[clip.file]

    rank, world = ctx.shard
    hits: dict[str, dict[str, list[bool]]] = {}
    skipped, rows, unit = [], [], 0
    for pair in pairs:
        a_clips = _clips_of(pair.a, clips)
        rng = random.Random(f"{ctx.seed}|{pair.a}|{pair.b}|{pair.relation}")
        chosen = rng.sample(a_clips, min(opts.clips_per_pair, len(a_clips)))
        for clip_a in chosen or [None]:
            b_pool = [c for c in _clips_of(pair.b, clips) if clip_a is None or c.file != clip_a.file]
            if not b_pool and pair.relation == "synonym" and clip_a is not None:
                b_pool = [c for c in a_clips if c.file != clip_a.file]
            clip_b = rng.choice(b_pool) if b_pool else None
            for probe in opts.probes:
                if (probe != "text" and clip_a is None) or (probe == "audio" and clip_b is None):
                    skipped.append({"pair": [pair.a, pair.b, pair.relation], "probe": probe,
                                    "reason": f"no clip labelled {pair.a if clip_a is None else pair.b!r}"})
                    continue
                for asked in ASKED[pair.relation]:
                    prompt = QUESTIONS[(probe, asked)].format(a=pair.a, b=pair.b) + SUFFIX
                    ids = [str(c.file.relative_to(folder)) for c in (clip_a, clip_b) if c is not None]
                    item_id = f"{pair.a}|{pair.b}|{pair.relation}|{probe}|{asked}|" + "|".join(
                        ids if probe == "audio" else ids[:1] if probe == "mixed" else [])

                    def compute(probe=probe, prompt=prompt, clip_a=clip_a, clip_b=clip_b) -> dict:
                        shown = None
                        if probe == "mixed":
                            shown = wave(clip_a)
                        elif probe == "audio":
                            shown = np.concatenate([wave(clip_a), np.zeros(int(GAP_SECONDS * sr), np.float32),
                                                    wave(clip_b)])
                        s = score_options(ctx.model, ctx.processor, ctx.media, prompt, list(ANSWERS), audio=shown,
                                          shared=shared)
                        return {"logprob": list(s.logprob), "n_tokens": list(s.n_tokens)}

                    settings = {"prompt": prompt, "options": list(ANSWERS)}
                    owned = unit % world == rank
                    unit += 1
                    inputs = [media_identity(c.file) for c in (clip_a, clip_b) if c is not None]
                    value = ctx.cached(SUITE, item_id, settings, compute, inputs) if owned else \
                        ctx.lookup(SUITE, item_id, settings, inputs)
                    if value is None:
                        continue
                    pred = ANSWERS[int(np.argmax(value["logprob"]))]
                    right = pred == ("no" if pair.relation == "unrelated" else "yes")
                    hits.setdefault(pair.relation, {}).setdefault(probe, []).append(right)
                    rows.append({"item_id": item_id, "relation": pair.relation, "probe": probe, "asked": asked,
                                 "pred": pred, "right": right})
    if not hits and world == 1:
        raise ValueError(f"no concept pair could be asked: {skipped[:3]}")
    accuracy = {rel: {p: Accuracy.of(h).as_dict() for p, h in per.items()} for rel, per in hits.items()}
    metrics = {f"{rel}/{p}": m["accuracy"] for rel, per in accuracy.items() for p, m in per.items()}
    if rank == 0:
        from data_builders.annotations import write_jsonl

        write_jsonl(ctx.out_dir / SUITE / "predictions.jsonl", rows)
    return {"metrics": metrics, "accuracy": accuracy, "skipped": skipped,
            "settings": {"pairs": str(opts.pairs or CONCEPT_PAIRS), "data": str(folder), "probes": opts.probes,
                         "n_pairs": len(pairs)}}
