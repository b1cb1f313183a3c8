"""Suite ``spectrogram_mcq``: can a model tell which word a spectrogram shows? (after "Seeing isn't Hearing")

Four conditions, {graphemic, phonemic} options x {spectrogram, spectrogram + waveform} images, scored by option
log-likelihood (``eval.scoring.score_options``: no answer parsing, any checkpoint). Ablations that expose bias
exploitation: a blank image, the options only (no image), and for omni models the audio
itself instead of its picture. Text-only baselines (``eval.spectrogram_baselines``) show what the options alone
give; all of them should sit at chance (25%).

Suite options (``ctx.options``): ``items`` (path to items.jsonl, required), ``split`` (default "test"),
``limit`` (N items taken as whole option sets, for smoke runs), ``normalise`` (length-normalised
log-likelihood, default false), ``asr`` (a transformers speech-recognition checkpoint, hub id in the local cache
or folder, e.g. openai/whisper-large-v3; ``tiny-whisper`` for an offline random one) and ``human`` (a CSV of
people's answers, :func:`eval.spectrogram_references.read_human_answers`): the reference rows. Without them the
published figures of "Seeing isn't Hearing" stand in (people 75%, ASR 87.56%).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_builders.annotations import write_jsonl
from data_builders.spectrogram_mcq import CONDITIONS, SpectrogramItem, prompt, read_items
from eval.context import EvalContext
from eval.scoring import SharedMedia, score_options
from eval.spectrogram_baselines import Accuracy, text_only_baselines
from eval.spectrogram_references import human_reference, nearest_option, published

SUITE = "spectrogram_mcq"
CHANCE = 0.25


@dataclass(frozen=True)
class Condition:
    """One way of asking: which option list, and what the model is shown (image kind, blank, audio, nothing)."""

    name: str
    option_kind: str   # graphemic | phonemic
    shown: str         # spectrogram | spectrogram+waveform | blank | none | audio


def conditions() -> list[Condition]:
    """The four conditions of "Seeing isn't Hearing"."""
    return [Condition(f"{k}/{i}", k, i) for k, i in CONDITIONS]


def ablations(omni: bool) -> list[Condition]:
    """Blank image and options only, for both option kinds; the audio instead of its picture for omni models."""
    shown = ["blank", "none"] + (["audio"] if omni else [])
    return [Condition(f"{k}/{s}", k, s) for s in shown for k in ("graphemic", "phonemic")]


def _image(item: SpectrogramItem, root: Path, shown: str):
    from PIL import Image

    if shown == "spectrogram":
        return Image.open(root / item.spectrogram).convert("RGB")
    if shown == "spectrogram+waveform":
        return Image.open(root / item.combined).convert("RGB")
    if shown == "blank":
        # Same size as the spectrogram, one flat colour: the image carries no information.
        with Image.open(root / item.spectrogram) as im:
            return Image.new("RGB", im.size, "white")
    return None


def _audio(item: SpectrogramItem, root: Path, sample_rate: int) -> np.ndarray:
    import librosa
    import soundfile as sf

    y, sr = sf.read(root / item.audio, dtype="float32")
    return librosa.resample(y, orig_sr=sr, target_sr=sample_rate) if sr != sample_rate else y


def predict(ctx: EvalContext, item: SpectrogramItem, root: Path, cond: Condition, normalise: bool,
            shared: SharedMedia | None = None) -> dict:
    """Score one item under one condition; returns {"pred", "logprob", "n_tokens"} (JSON, cached)."""
    options = getattr(item.options, cond.option_kind)
    text = prompt(options, cond.option_kind, cond.shown)
    audio = _audio(item, root, ctx.media.sample_rate) if cond.shown == "audio" else None
    scores = score_options(ctx.model, ctx.processor, ctx.media, text, options, image=_image(item, root, cond.shown),
                           audio=audio, shared=shared)
    return {"pred": scores.best(normalise), "logprob": list(scores.logprob), "n_tokens": list(scores.n_tokens)}


def item_inputs(item: SpectrogramItem, root: Path) -> dict:
    """What a prediction is computed from: the item record (options, answer) and its media files' content."""
    from eval.context import media_identity

    files = {k: media_identity(root / getattr(item, k)) for k in ("audio", "spectrogram", "combined")}
    return {"item": item.model_dump(mode="json", exclude={"split"}), "files": files}


def summarise(items: list[SpectrogramItem], preds: list[int | None]) -> dict[str, Any]:
    """Accuracy (n, Wilson 95% interval), mean PED of the selected option and of a uniformly random pick.

    ``mean_ped_random`` is the expectation (mean of each item's four PEDs), not a sample: an informed error picks
    a closer option than that.
    """
    pairs = [(it, p) for it, p in zip(items, preds) if p is not None]
    acc = Accuracy.of([p == it.answer for it, p in pairs]).as_dict()
    acc["mean_ped_selected"] = float(np.mean([it.ped[p] for it, p in pairs])) if pairs else float("nan")
    acc["mean_ped_random"] = float(np.mean([np.mean(it.ped) for it, _ in pairs])) if pairs else float("nan")
    return acc


def select(items: list[SpectrogramItem], limit: int) -> list[SpectrogramItem]:
    """``limit`` items taken as whole option sets (all four items of a set, set after set).

    Why: ids follow lexicon (frequency) order, so "the first N by id" are mostly the most frequent word of their
    set, and a frequency-biased scorer is handed the answer (seen: a random tiny model at 7/8). Complete sets keep
    every options-only property right on exactly 1 in 4 items (for a limit that is a multiple of 4).
    """
    return sorted(items, key=lambda it: (it.option_set, it.id))[:limit]


def _references(ctx: EvalContext, items: list[SpectrogramItem], root: Path) -> tuple[dict, list[dict]]:
    """The ASR and human rows (measured when the ``asr``/``human`` options are given, else published) and the ASR's
    prediction rows. The ASR transcripts are cached per item like model predictions."""
    refs: dict[str, dict] = {"asr": published("asr"), "human": published("human")}
    rows: list[dict] = []
    if ctx.options.get("human"):
        refs["human"] = human_reference(ctx.options["human"], items)
    name = ctx.options.get("asr")
    if not name:
        return refs, rows
    from eval.spectrogram_references import load_asr, transcribe

    settings = {"reference": "asr", "model": str(name), "prompt_version": 1}
    rank, world = ctx.shard
    asr = None
    preds: list[int | None] = []
    for i, item in enumerate(items):
        if i % world == rank:
            def compute(item=item):
                nonlocal asr
                if asr is None:
                    asr = load_asr(str(name), device=_device(ctx))
                rate = asr.feature_extractor.sampling_rate  # what the recogniser was trained on (16 kHz for Whisper)
                return {"transcript": transcribe(asr, _audio(item, root, rate), rate)}

            value = ctx.cached(SUITE, item.id, settings, compute)
        else:
            value = ctx.lookup(SUITE, item.id, settings)
        pred = None if value is None else nearest_option(value["transcript"], item.options.graphemic, ctx.seed)
        preds.append(pred)
        if value is not None:
            rows.append({"id": item.id, "section": "references", "condition": "asr", "pred": pred,
                         "answer": item.answer, "ped": item.ped[pred], "transcript": value["transcript"]})
    refs["asr"] = summarise(items, preds) | {"model": str(name)}
    return refs, rows


def _device(ctx: EvalContext):
    """The evaluated model's device, so the recogniser runs on the same GPU (or the CPU)."""
    try:
        return next(ctx.model.parameters()).device
    except (AttributeError, StopIteration):
        return None


def run(ctx: EvalContext) -> dict:
    """Evaluate ``ctx.model`` on the spectrogram benchmark; returns the suite's ``results.json`` section:
    ``{"conditions": {name: metrics}, "ablations": {...}, "baselines": {...}, "metrics": {...}, "settings": {...}}``.

    Raises:
        ValueError: no ``items`` option, or no items in the split.
    """
    if "items" not in ctx.options:
        raise ValueError("suite spectrogram_mcq needs the option items=PATH/items.jsonl; build it with "
                         "`python -m data_builders spectrogram-mcq --out DIR`")
    path = Path(ctx.options["items"])
    split = ctx.options.get("split", "test")
    normalise = bool(ctx.options.get("normalise", False))
    items = read_items(path, split)
    if ctx.options.get("limit"):
        items = select(items, int(ctx.options["limit"]))
    if not items:
        raise ValueError(f"{path} has no items in split {split!r}")
    root = path.parent
    omni = ctx.takes_audio()
    rank, world = ctx.shard
    rows = []
    sections: dict[str, dict] = {"conditions": {}, "ablations": {}}
    plan = [(section, cond) for section, conds in (("conditions", conditions()), ("ablations", ablations(omni)))
            for cond in conds]
    # Asked item by item, conditions that show the same image or sound one after the other, so the graphemic and
    # phonemic questions on it encode it once (SharedMedia); the results are gathered per condition below.
    shared = SharedMedia()
    values: dict[tuple[str, int], Any] = {}
    for i, item in enumerate(items):
        inputs = item_inputs(item, root)
        for _, cond in sorted(plan, key=lambda p: p[1].shown):
            settings = {"condition": cond.name, "normalise": normalise, "prompt_version": 1}
            if i % world == rank:
                values[cond.name, i] = ctx.cached(SUITE, item.id, settings,
                                                  lambda: predict(ctx, item, root, cond, normalise, shared), inputs)
            else:  # another data-parallel process computes it; use it when it is already there
                values[cond.name, i] = ctx.lookup(SUITE, item.id, settings, inputs)
    for section, cond in plan:
        preds: list[int | None] = []
        for i, item in enumerate(items):
            value = values[cond.name, i]
            preds.append(None if value is None else int(value["pred"]))
            if value is not None:
                rows.append({"id": item.id, "section": section, "condition": cond.name, "pred": value["pred"],
                             "answer": item.answer, "ped": item.ped[value["pred"]]})
        sections[section][cond.name] = summarise(items, preds)
    references, asr_rows = _references(ctx, items, root)
    rows += asr_rows
    train = read_items(path, "train") if split != "train" else []
    baselines = text_only_baselines(train, items, seed=ctx.seed)
    if rank == 0:  # with data-parallel evaluation the merge pass (shard (0, 1)) writes the complete file
        write_jsonl(ctx.out_dir / f"{SUITE}_predictions.jsonl", rows)
    metrics = {f"{sec}/{name}": m["accuracy"] for sec in ("conditions", "ablations")
               for name, m in sections[sec].items()}
    extra = {}
    if ctx.options.get("input_conditions") is not None and omni:  # the audio questions without audio and in fragments
        from eval.condition_suites import spectrogram_items
        from eval.conditions import InputConditions, evaluate_conditions

        extra["input_conditions"] = evaluate_conditions(ctx, SUITE, spectrogram_items(items, root, ctx.media),
                                                        InputConditions.model_validate(
                                                            ctx.options["input_conditions"]), normalise)
    for name, ref in references.items():
        if not ref.get("published"):
            metrics[f"references/{name}"] = ref["accuracy"]
    return {**sections, "baselines": baselines, "references": references, "metrics": metrics, "chance": CHANCE,
            **extra,
            "settings": {"items": str(path), "split": split, "n_items": len(items), "normalise": normalise,
                         "omni": omni, "params": items[0].params}}
