"""The Thud suite: ``run(ctx)`` evaluates held-out clips under every condition in both modes (closed set, free form) and returns
the suite's section of ``results.json``.

Per item and mode one prediction is cached through :meth:`EvalContext.cached` (keyed by checkpoint content, item,
prompt, options and media settings), so an interrupted run resumes and a repeated one makes no model call. Labels
of free-form answers are recomputed from the cached text on every run: a parser fix relabels without regenerating.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from data_builders.interventions import apply_intervention
from data_builders.media import load_audio, load_clip
from eval.conditions import evaluate_conditions
from eval.context import EvalContext
from eval.scoring import score_options
from eval.stats import wilson_pct
from eval.thud.items import ThudItem, held_out_clips, plan_items, read_sync_set
from eval.thud.judge import Verdict, make_judge
from eval.thud.metrics import compute_metrics, sync_metric
from eval.thud.options import ThudOptions
from eval.thud.parser import Parsed, parse_answer
from eval.thud.prompts import FREE_FORM_PROMPT, ClosedSetQuestion, closed_set_question
from eval.thud.records import DIMENSIONS, INTERVENED, PredictionRow, is_correct
from train.inputs import generate_texts

SUITE = "thud"
# Free-form results with at least this share of undetermined answers and no judge are flagged unreliable: the
# parser could not read them, and reading their zeros as measured failures would mislead.
UNRELIABLE_UNDETERMINED_PCT = 20.0
# Which dimension questions each condition answers (the original answers all three).
DIMS_OF: dict[str, tuple[str, ...]] = {"original": DIMENSIONS, **{c: (d,) for d, c in INTERVENED.items()}}


class _Media:
    """Decoded clips, a few at a time: every condition and question of a clip reuses one decode."""

    def __init__(self, ctx: EvalContext, size: int = 4):
        self.ctx, self.size = ctx, size
        self._clips: OrderedDict[str, Any] = OrderedDict()

    def clip(self, path: Path):
        key = str(path)
        if key not in self._clips:
            self._clips[key] = load_clip(path, self.ctx.media)
            while len(self._clips) > self.size:
                self._clips.popitem(last=False)
        return self._clips[key]

    def inputs(self, item: ThudItem) -> tuple[np.ndarray, np.ndarray]:
        """(frames, intervened waveform). Frames are the same array for every condition of the clip."""
        clip = self.clip(item.video)
        donor = None
        if item.intervention.kind == "swap":
            donor, _ = load_audio(item.intervention.donor_video, self.ctx.media.sample_rate,
                                  max_seconds=min(clip.duration, self.ctx.media.max_clip_seconds) or None)
        return clip.frames, apply_intervention(clip.audio, item.intervention, clip.sample_rate, donor)


def generate_answers(model, processor, media, prompt: str, clips: list[tuple[np.ndarray, np.ndarray]],
                     max_new_tokens: int, temperature: float = 0.0) -> list[str]:
    """Free-form answers to ``prompt`` about each (frames, waveform) clip, generated in one batch (greedy at
    temperature 0: each the answer the clip gets alone)."""
    return generate_texts(model, processor, media, [prompt] * len(clips), videos=[f for f, _ in clips],
                          audios=[a for _, a in clips], max_new_tokens=max_new_tokens, temperature=temperature)


def _row(item: ThudItem, dim: str, mode: str, label: str, offset: float | None, by: str, **extra) -> PredictionRow:
    if item.band is not None:
        extra["band"] = item.band
    return PredictionRow(source_id=item.source_id, dimension=dim, condition=item.condition,
                         offset=item.model_offset(), label=label,
                         predicted_offset=offset, labelled_by=by, mode=mode, item_id=item.item_id, **extra)


@dataclass(frozen=True)
class _Unit:
    """One prediction of a Thud run: a closed-set question (``dim``) or the free-form answer (``dim`` None) of an
    item, with its cache key parts and whether this shard computes it."""

    item: ThudItem
    dim: str | None
    question: ClosedSetQuestion | None
    settings: dict
    key: str
    inputs: dict
    owned: bool


def _units(ctx: EvalContext, items: list[ThudItem], opts: ThudOptions, dims_of) -> list[_Unit]:
    """Every prediction of ``items`` in evaluation order (per item: its closed-set questions, then its free-form
    answer); unit ``n`` belongs to the shard ``n % world``."""
    rank, world = ctx.shard
    out: list[_Unit] = []
    for item in items:
        spec = item.intervention.model_dump(mode="json", exclude_none=True)
        spec.pop("donor_video", None)  # a path: the donor's file enters the key by content (`inputs`), not by path
        inputs = item_inputs(item)
        if "closed_set" in opts.modes:
            for dim in dims_of[item.condition]:
                q = closed_set_question(item.source_id, dim, ctx.seed)
                settings = {"mode": "closed_set", "prompt": q.prompt, "options": q.options, "spec": spec}
                out.append(_Unit(item, dim, q, settings, f"{item.item_id}|{dim}|closed_set", inputs,
                                 len(out) % world == rank))
        if "free_form" in opts.modes:
            settings = {"mode": "free_form", "prompt": FREE_FORM_PROMPT, "max_new_tokens": opts.max_new_tokens,
                        "temperature": opts.temperature, "spec": spec}
            out.append(_Unit(item, None, None, settings, f"{item.item_id}|free_form", inputs,
                             len(out) % world == rank))
    return out


def evaluate_items(ctx: EvalContext, items: list[ThudItem], opts: ThudOptions,
                   judge: Callable[[str], Verdict] | None = None, dims_of=DIMS_OF) -> dict[str, list[PredictionRow]]:
    """Predictions for ``items`` in every mode of ``opts``: {mode: rows}. Items owned by other shards are read from
    the cache when there and skipped otherwise (the merge pass picks them up).

    With a judge, free-form answers in its scope (every answer by default) take the judge's label
    (``labelled_by: judge``); the parser's label and offset stay beside it (``parser_label``, ``parser_offset``)."""
    from eval.context import Batched
    from eval.scoring import SharedMedia

    # A batch of free-form answers spans up to batch_size clips, which the closed-set questions then reuse.
    media = _Media(ctx, size=max(4, opts.batch_size + 1))
    shared = SharedMedia()  # the questions on one clip and condition encode it once
    answers = Batched(lambda batch: [{"text": t} for t in generate_answers(
        ctx.model, ctx.processor, ctx.media, FREE_FORM_PROMPT, [media.inputs(i) for i in batch], opts.max_new_tokens,
        opts.temperature)], opts.batch_size)
    units = _units(ctx, items, opts, dims_of)
    for u in units:
        if u.dim is None and u.owned and ctx.lookup(SUITE, u.key, u.settings, u.inputs) is None:
            answers.want(u.key, u.item)
    rows: dict[str, list[PredictionRow]] = {m: [] for m in opts.modes}
    for u in units:
        item, inputs, settings, item_key = u.item, u.inputs, u.settings, u.key
        if u.dim is not None:
            q = u.question

            def compute(q=q, item=item) -> dict:
                frames, audio = media.inputs(item)
                s = score_options(ctx.model, ctx.processor, ctx.media, q.prompt, q.options, frames=frames,
                                  audio=audio, shared=shared)
                return {"logprob": list(s.logprob), "n_tokens": list(s.n_tokens)}

            value = ctx.cached(SUITE, item_key, settings, compute, inputs) if u.owned else \
                ctx.lookup(SUITE, item_key, settings, inputs)
            if value is None:
                continue
            score = np.array(value["logprob"]) / (np.array(value["n_tokens"]) if opts.length_normalise else 1)
            rows["closed_set"].append(_row(item, u.dim, "closed_set", q.order[int(np.argmax(score))], None,
                                           "closed_set", option_order=list(q.order),
                                           option_logprob=value["logprob"], prompt_sha=_sha(q.prompt)))
        else:
            owned = u.owned
            value = ctx.cached(SUITE, item_key, settings, lambda u=u: answers.get(u.key, u.item), inputs) \
                if owned else ctx.lookup(SUITE, item_key, settings, inputs)
            if value is None:
                continue
            parsed, by = parse_answer(value["text"]), "parser"
            extra: dict[str, Any] = {}
            if judge is not None and (opts.judge.scope == "all" or parsed.label == "undetermined"):
                # The verdict is cached like a prediction, keyed by the judge's settings and the answer text.
                jset = {"judge": opts.judge.model_dump(mode="json"), "text": value["text"]}

                def ask(text=value["text"]) -> dict:
                    verdict = judge(text)
                    return {"label": verdict.parsed.label, "offset": verdict.parsed.offset, "reply": verdict.reply}

                j = ctx.cached(SUITE + ".judge", item_key, jset, ask) if owned else \
                    ctx.lookup(SUITE + ".judge", item_key, jset)
                if j is not None:
                    extra = {"parser_label": parsed.label, "parser_offset": parsed.offset,
                             "judge_reply": j.get("reply")}
                    parsed, by = Parsed(j["label"], j["offset"]), "judge"
            for dim in dims_of[item.condition]:
                rows["free_form"].append(_row(item, dim, "free_form", parsed.label, parsed.offset, by,
                                              text=value["text"], prompt_sha=_sha(FREE_FORM_PROMPT), **extra))
    return rows


def item_inputs(item: ThudItem) -> dict:
    """What one item's prediction is computed from, beyond prompt and intervention: its clip's content and, for a
    swap, the donor's (so an annotation pointing at another file, or a re-encoded clip, is evaluated again)."""
    from eval.context import media_identity

    out = {"video": media_identity(item.video)}
    if item.intervention.donor_video:
        out["donor"] = media_identity(item.intervention.donor_video)
    return out


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sync_set_metrics(rows: list[PredictionRow]) -> dict:
    """Out-of-distribution sync set: temporal_sync accuracy per band (and overall), with n and 95% interval."""
    per: dict[str, list[bool]] = {}
    for r in rows:
        per.setdefault(str(getattr(r, "band", None) or "unbanded"), []).append(is_correct(r))
    per["all"] = [is_correct(r) for r in rows]
    return {b: {"accuracy": (100.0 * sum(v) / len(v)) if v else None, "n": len(v),
                "ci95": wilson_pct(sum(v), len(v))} for b, v in per.items()}


def judge_summary(rows: list[PredictionRow]) -> dict | None:
    """Agreement of the parser with the judge on the answers the judge read (one per answer, not per dimension);
    None when no answer was judged."""
    seen: dict[str, bool] = {}
    for r in rows:
        if r.labelled_by == "judge" and getattr(r, "parser_label", None) is not None:
            seen[getattr(r, "item_id", r.source_id)] = r.parser_label == r.label
    if not seen:
        return None
    k, n = sum(seen.values()), len(seen)
    return {"judged": n, "agreement": {"value": 100.0 * k / n, "n": n, "ci95": wilson_pct(k, n)}}


def reliability(metrics: dict, judged: bool) -> dict:
    """Whether a free-form result can be read as a measurement: unreliable when at least
    :data:`UNRELIABLE_UNDETERMINED_PCT` % of answers are undetermined and no judge ran."""
    und = metrics.get("undetermined_rate", {}).get("all", {}).get("value") or 0.0
    return {"undetermined_pct": und, "judged": judged,
            "unreliable": not judged and und >= UNRELIABLE_UNDETERMINED_PCT}


def _write_rows(path: Path, rows: list[PredictionRow]) -> None:
    from recipes.io import write_jsonl

    write_jsonl(path, [r.model_dump(mode="json") for r in rows])


def run(ctx: EvalContext) -> dict:
    """Evaluate the checkpoint in ``ctx`` on Thud; returns ``{"metrics": {mode: metrics}, ...}`` for results.json.

    Writes ``<out_dir>/thud/predictions_<mode>.jsonl`` (input of ``python -m eval metrics thud``).
    Raises:
        ValueError: bad options, or neither ``annotations`` nor ``sync_set`` given.
    """
    opts = ThudOptions.model_validate(ctx.options)
    if not opts.annotations and not opts.sync_set:
        raise ValueError("thud needs option 'annotations' (a JSONL of held-out clips, e.g. data/<recipe>/"
                         "test_clips.jsonl) or 'sync_set'; pass --set thud.annotations=PATH")
    judge = make_judge(opts.judge, FREE_FORM_PROMPT) if opts.judge is not None else None
    out_dir = ctx.out_dir / SUITE
    result: dict[str, Any] = {"options": opts.model_dump(mode="json"), "metrics": {}, "predictions": {}}
    if opts.annotations:
        clips = held_out_clips(opts.annotations, opts.limit, opts.split)
        plan = plan_items(clips, opts.offsets, opts.shifts_per_clip, ctx.seed, opts.conditions, opts.margin,
                          opts.shift_gap)
        items = plan.items
        rows = evaluate_items(ctx, items, opts, judge)
        result["n_clips"], result["n_items"], result["item_plan"] = len(clips), len(items), plan.summary()
        for mode, mrows in rows.items():
            path = out_dir / f"predictions_{mode}.jsonl"
            _write_rows(path, mrows)
            result["predictions"][mode] = str(path)
            result["metrics"][mode] = compute_metrics(mrows, opts.band_edges)
            result.setdefault("labelled_by", {})[mode] = dict(Counter(r.labelled_by for r in mrows))
            if mode == "free_form":
                result["judge"] = judge_summary(mrows)
                if result["judge"] is not None:
                    result["judge"]["by"] = opts.judge.describe()
                result["reliability"] = {mode: reliability(result["metrics"][mode], result["judge"] is not None)}
        if opts.input_conditions is not None:
            from eval.condition_suites import thud_items

            result["input_conditions"] = evaluate_conditions(ctx, SUITE, thud_items(items, ctx.media, ctx.seed),
                                                             opts.input_conditions, opts.length_normalise)
    if opts.sync_set:
        sync_items = read_sync_set(opts.sync_set)
        srows = evaluate_items(ctx, sync_items, opts, judge,
                               dims_of={"original": ("temporal_sync",), "shift": ("temporal_sync",)})
        result["sync_set"], result["sync_set_sync"] = {}, {}
        for mode, mrows in srows.items():
            path = out_dir / f"sync_set_{mode}.jsonl"
            _write_rows(path, mrows)
            result["predictions"][f"sync_set_{mode}"] = str(path)
            result["sync_set"][mode] = sync_set_metrics(mrows)
            # Table 2's VGGSync column: the class-balanced Sync on the out-of-distribution set.
            result["sync_set_sync"][mode] = sync_metric(mrows)
    return result
