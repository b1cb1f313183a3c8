"""Suite ``audio_mcq``: any multiple-choice audio benchmark given as JSONL (MMAU-style), scored by option
log-likelihood, optionally under the input conditions of :mod:`eval.conditions`.

One item per line: ``{"audio": PATH or "video": PATH, "question": str, "options": [str, ...], "answer": str | int}``
(paths relative to the JSONL's folder; ``answer`` is the text of one option or its 0-based index; ``id`` optional).
A broken line is quarantined with its line number and reason, and the rest is evaluated. Without ``items`` the
offline sound world's questions are used (:mod:`data_builders.sound_world`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from eval.conditions import ConditionItem, InputConditions, evaluate_conditions
from eval.context import EvalContext, media_identity
from eval.reliance import flat_metrics

SUITE = "audio_mcq"


class AudioMcqOptions(BaseModel):
    """Options of the ``audio_mcq`` suite."""

    model_config = ConfigDict(extra="forbid")

    items: str | None = Field(None, description="JSONL of questions (default: the offline sound world's)")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N valid items")
    normalise: bool = Field(False, description="length-normalised option log-likelihood")
    input_conditions: InputConditions | None = Field(None, description="no_audio / fragment conditions")
    world_per_class: int = Field(2, ge=1, description="offline world: clips per sound class")


@dataclass(frozen=True)
class McqItem:
    """One question of an audio multiple-choice benchmark."""

    id: str
    media: Path
    is_video: bool
    question: str
    options: tuple[str, ...]
    answer: int


def _parse(row: dict, root: Path, lineno: int) -> McqItem:
    if not isinstance(row, dict):
        raise ValueError("a line must be a JSON object")
    kinds = [k for k in ("audio", "video") if row.get(k)]
    if len(kinds) != 1:
        raise ValueError("give exactly one of 'audio' and 'video'")
    for key in ("question", "options", "answer"):
        if key not in row:
            raise ValueError(f"missing field '{key}'")
    options = row["options"]
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
        raise ValueError("'options' must be a list of at least two non-empty strings")
    answer = row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise ValueError("'answer' must be an option's text or its index")
    if isinstance(answer, str):
        if options.count(answer) != 1:
            raise ValueError(f"'answer' {answer!r} is not exactly one of the options")
        answer = options.index(answer)
    elif not 0 <= answer < len(options):
        raise ValueError(f"'answer' index {answer} is outside the {len(options)} options")
    media = Path(row[kinds[0]])
    media = media if media.is_absolute() else root / media
    if not media.is_file():
        raise ValueError(f"{kinds[0]} file {media} does not exist")
    return McqItem(id=str(row.get("id") or f"{lineno}:{row[kinds[0]]}"), media=media, is_video=kinds[0] == "video",
                   question=str(row["question"]), options=tuple(options), answer=int(answer))


def read_items(path: str | Path) -> tuple[list[McqItem], list[dict]]:
    """(valid items, quarantined ``{"line", "reason"}``) of a question JSONL.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such question file (JSONL of {{audio|video, question, options, "
                                "answer}})")
    items, bad = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_parse(json.loads(line), path.parent, lineno))
        except (json.JSONDecodeError, ValueError) as exc:
            bad.append({"line": lineno, "reason": f"{path}:{lineno}: {exc}"})
    return items, bad


def prompt(question: str, options: tuple[str, ...]) -> str:
    """The question, its lettered options, and the answer format (the option's text is what gets scored)."""
    lines = [question] + [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines + ["Answer with the text of one option."])


def condition_items(items: list[McqItem], media) -> list[ConditionItem]:
    """The questions as :class:`ConditionItem` records (media decoded lazily with the recipe's settings)."""
    from data_builders.media import load_clip, probe_duration
    from eval.context import decoded_audio

    out = []
    for it in items:
        if it.is_video:
            def load(it=it):
                clip = load_clip(it.media, media)
                return clip.frames, clip.audio
        else:
            def load(it=it):
                return None, decoded_audio(it.media, media.sample_rate, max_seconds=media.max_clip_seconds)
        duration = min(probe_duration(it.media), media.max_clip_seconds)
        out.append(ConditionItem(it.id, prompt(it.question, it.options), it.options, frozenset({it.answer}),
                                 duration, load, media_identity(it.media)))
    return out


def run(ctx: EvalContext) -> dict:
    """Evaluate ``ctx.model`` on the questions; returns ``{"metrics", "accuracy", "input_conditions"?,
    "quarantined", "settings"}``.

    Raises:
        ValueError: bad options, no valid item, or a model without audio input.
    """
    from data_builders.sound_world import default_world

    opts = AudioMcqOptions.model_validate(ctx.options)
    path = Path(opts.items) if opts.items else default_world(opts.world_per_class, ctx.seed) / "audio_mcq.jsonl"
    items, quarantined = read_items(path)
    items = items[:opts.limit] if opts.limit else items
    if not items:
        raise ValueError(f"{path}: no valid question to evaluate ({len(quarantined)} quarantined: "
                         f"{[q['reason'] for q in quarantined[:3]]})")
    if not ctx.takes_audio():
        raise ValueError("audio_mcq needs a model that takes audio (an Omni thinker); this processor has no "
                         "audio feature extractor")
    spec = opts.input_conditions or InputConditions(no_audio=[])
    res = evaluate_conditions(ctx, SUITE, condition_items(items, ctx.media), spec, opts.normalise)
    out = {"metrics": flat_metrics(res), "accuracy": res["accuracy"]["full"], "quarantined": quarantined,
           "settings": {"items": str(path), "n_items": len(items), "normalise": opts.normalise}}
    if opts.input_conditions is not None:
        out["input_conditions"] = res
    return out
