"""Suite ``caption_classification``: classify sounds by what the model says about them.

Method of "What do MLLMs hear? Examining reasoning with text and sound components in Multimodal Large Language
Models": the model captions each clip; the caption and every label of the label set, both prefixed "sound of ",
are embedded with a text-embedding model (here any sentence-transformers model the recipe names); a class's score
is the cosine similarity of the two. Reported per label set (in-distribution and out-of-distribution apart): mAP
and macro ROC AUC over the scores, accuracy and macro F1 of the top-scoring label.

Data: a folder with ``labels.jsonl`` (``{"file": ..., "labels": [...]}``) or ``labels.csv`` (columns ``file`` and
``labels``, labels separated by ``;``), files relative to the folder (audio or video); an optional
``label_sets.json`` ``{set name: [labels]}``. Without ``data`` the offline sound world is used.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eval.context import Batched, EvalContext, media_identity

SUITE = "caption_classification"
PREFIX = "sound of "  # the paper's prefix, on captions and labels alike
CAPTION_PROMPT = "Describe the sound in this audio clip in one short sentence."


class CaptionOptions(BaseModel):
    """Options of the ``caption_classification`` suite."""

    model_config = ConfigDict(extra="forbid")

    embedder: str | None = Field(None, description="sentence-transformers model: folder, cached hub id, or "
                                                   "tiny-sentence-embedder (machinery only)")
    data: str | None = Field(None, description="folder with labels.jsonl or labels.csv (default: the sound world)")
    label_sets: dict[str, list[str]] | None = Field(None, description="set name -> labels (default: the folder's "
                                                                      "label_sets.json, else one set 'all')")
    prompt: str = Field(CAPTION_PROMPT, description="what the model is asked about each clip")
    max_new_tokens: int = Field(24, ge=1)
    limit: int | None = Field(None, ge=1, description="only the first N clips")
    batch_size: int = Field(8, ge=1, description="clips captioned in one generate call")
    world_per_class: int = Field(2, ge=1, description="offline world: clips per sound class")


@dataclass(frozen=True)
class LabelledClip:
    """One clip and its labels (multi-label, AudioSet-style)."""

    file: Path
    labels: tuple[str, ...]


def _split_labels(cell: str) -> list[str]:
    return [x.strip() for x in cell.split(";") if x.strip()]


def read_labelled(folder: str | Path) -> tuple[list[LabelledClip], list[dict]]:
    """(clips, quarantined ``{"record", "reason"}``) of a labelled folder.

    Raises:
        FileNotFoundError: the folder has neither labels.jsonl nor labels.csv.
    """
    folder = Path(folder)
    rows: list[tuple[str, object]] = []
    if (folder / "labels.jsonl").is_file():
        for n, line in enumerate((folder / "labels.jsonl").read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((f"labels.jsonl:{n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    rows.append((f"labels.jsonl:{n}", exc))
    elif (folder / "labels.csv").is_file():
        with (folder / "labels.csv").open(encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                labels = row.get("labels")
                rows.append((f"labels.csv:{n}", {"file": row.get("file"),
                                                 "labels": _split_labels(labels) if labels is not None else None}))
    else:
        raise FileNotFoundError(f"{folder}: no labels.jsonl or labels.csv ({{file, labels}} per clip)")
    clips, bad = [], []
    for where, row in rows:
        reason = None
        if not isinstance(row, dict):
            reason = f"not a JSON object ({row})"
        elif not row.get("file") or not isinstance(row["file"], str):
            reason = "missing 'file'"
        elif not isinstance(row.get("labels"), list) or not row["labels"]:
            reason = "'labels' must be a non-empty list"
        elif not (folder / row["file"]).is_file():
            reason = f"file {folder / row['file']} does not exist"
        if reason:
            bad.append({"record": f"{folder}/{where}", "reason": reason})
            continue
        clips.append(LabelledClip(folder / row["file"], tuple(str(x) for x in row["labels"])))
    return clips, bad


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of one label (ties share a threshold, as in scikit-learn)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order].astype(float)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # end index of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of one label (Mann-Whitney U with tied ranks averaged)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    npos, nneg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def classification_metrics(scores: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """mAP (labels with a positive), macro AUC (labels with positives and negatives), top-1 accuracy (the best
    label is one of the clip's) and macro F1 of the top-1 prediction, over ``scores`` (clips x labels)."""
    targets = targets.astype(bool)
    ap = {lab: average_precision(scores[:, j], targets[:, j]) for j, lab in enumerate(labels) if targets[:, j].any()}
    auc = [roc_auc(scores[:, j], targets[:, j]) for j in range(len(labels))
           if targets[:, j].any() and not targets[:, j].all()]
    top = scores.argmax(axis=1)
    hit = targets[np.arange(len(top)), top]
    f1 = []
    for j in range(len(labels)):
        tp = int(np.sum((top == j) & targets[:, j]))
        fp = int(np.sum((top == j) & ~targets[:, j]))
        fn = int(np.sum((top != j) & targets[:, j]))
        if tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return {"n_clips": int(scores.shape[0]), "n_labels": len(labels),
            "mAP": float(np.mean(list(ap.values()))) if ap else None,
            "macro_auc": float(np.mean(auc)) if auc else None,
            "accuracy": float(hit.mean()) if hit.size else None,
            "f1": float(np.mean(f1)) if f1 else None,
            "ap_per_label": ap}


def generate_text(model, processor, media, prompt: str, audio: np.ndarray | None, frames: np.ndarray | None = None,
                  max_new_tokens: int = 24) -> str:
    """Greedy answer to ``prompt`` about one audio clip (with its frames when it is a video), or about frames alone
    when ``audio`` is None (a model without audio input)."""
    from train.inputs import generate_texts

    return generate_texts(model, processor, media, [prompt], videos=None if frames is None else [frames],
                          audios=None if audio is None else [audio], max_new_tokens=max_new_tokens)[0]


VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def caption_clips(ctx: EvalContext, prompt: str, clips: list[LabelledClip], max_new_tokens: int) -> list[str]:
    """Greedy captions of ``clips``: the audio files answered together in one batch, the videos (frames and sound)
    in another."""
    from data_builders.media import load_clip
    from eval.context import decoded_audio
    from train.inputs import generate_texts

    out: list[str] = [""] * len(clips)
    for video in (False, True):
        rows = [k for k, c in enumerate(clips) if (c.file.suffix.lower() in VIDEO_SUFFIXES) == video]
        if not rows:
            continue
        if video:
            decoded = [load_clip(clips[k].file, ctx.media) for k in rows]
            frames, audios = [d.frames for d in decoded], [d.audio for d in decoded]
        else:
            frames, audios = None, [decoded_audio(clips[k].file, ctx.media.sample_rate,
                                                  max_seconds=ctx.media.max_clip_seconds) for k in rows]
        texts = generate_texts(ctx.model, ctx.processor, ctx.media, [prompt] * len(rows), videos=frames,
                               audios=audios, max_new_tokens=max_new_tokens)
        for k, text in zip(rows, texts):
            out[k] = text
    return out


def _rel(clip: LabelledClip, folder: Path) -> str:
    return clip.file.relative_to(folder).as_posix()


def _label_sets(opts: CaptionOptions, folder: Path, clips: list[LabelledClip]) -> dict[str, list[str]]:
    if opts.label_sets:
        return opts.label_sets
    if (folder / "label_sets.json").is_file():
        return json.loads((folder / "label_sets.json").read_text(encoding="utf-8"))
    return {"all": sorted({lab for c in clips for lab in c.labels})}


def run(ctx: EvalContext) -> dict:
    """Caption every clip, score the captions against each label set; returns ``{"metrics", "label_sets",
    "captions", "quarantined", "settings"}``.

    Raises:
        ValueError: no ``embedder`` option, no valid clip, or a label set with no clip.
    """
    from data_builders.sound_world import default_world
    from eval.embedders import load_embedder

    opts = CaptionOptions.model_validate(ctx.options)
    if not opts.embedder:
        raise ValueError("caption_classification needs the option embedder=MODEL (a sentence-transformers folder "
                         "or cached hub id, e.g. sentence-transformers/all-MiniLM-L6-v2; "
                         "tiny-sentence-embedder exercises the machinery offline)")
    if not ctx.takes_audio():
        raise ValueError("caption_classification needs a model that takes audio (an Omni thinker)")
    folder = Path(opts.data) if opts.data else default_world(opts.world_per_class, ctx.seed)
    clips, quarantined = read_labelled(folder)
    clips = clips[:opts.limit] if opts.limit else clips
    if not clips:
        raise ValueError(f"{folder}: no valid labelled clip ({[q['reason'] for q in quarantined[:3]]})")
    rank, world = ctx.shard
    settings = {"prompt": opts.prompt, "max_new_tokens": opts.max_new_tokens}
    batched = Batched(lambda batch: [{"text": t} for t in caption_clips(ctx, opts.prompt, batch,
                                                                         opts.max_new_tokens)], opts.batch_size)
    for i, clip in enumerate(clips):
        if i % world == rank and ctx.lookup(SUITE, _rel(clip, folder), settings, media_identity(clip.file)) is None:
            batched.want(_rel(clip, folder), clip)
    captions: dict[str, str] = {}
    for i, clip in enumerate(clips):
        rel, inputs = _rel(clip, folder), media_identity(clip.file)
        value = ctx.cached(SUITE, rel, settings, lambda rel=rel, clip=clip: batched.get(rel, clip), inputs) \
            if i % world == rank else ctx.lookup(SUITE, rel, settings, inputs)
        if value is not None:
            captions[rel] = value["text"]
    done = [c for c in clips if _rel(c, folder) in captions]
    embedder = load_embedder(opts.embedder)
    cap_emb = embedder.encode([PREFIX + captions[_rel(c, folder)] for c in done],
                              normalize_embeddings=True, convert_to_numpy=True)
    sets, metrics = {}, {}
    for name, labels in _label_sets(opts, folder, clips).items():
        rows = [k for k, c in enumerate(done) if set(c.labels) & set(labels)]
        if not rows:
            raise ValueError(f"label set {name!r}: no clip of {folder} carries any of its labels {labels}")
        lab_emb = embedder.encode([PREFIX + lab for lab in labels], normalize_embeddings=True, convert_to_numpy=True)
        scores = cap_emb[rows] @ lab_emb.T
        targets = np.array([[lab in done[k].labels for lab in labels] for k in rows])
        sets[name] = classification_metrics(scores, targets, list(labels))
        metrics.update({f"{name}/{m}": sets[name][m] for m in ("mAP", "macro_auc", "accuracy", "f1")})
    path = ctx.out_dir / SUITE / "captions.jsonl"
    if rank == 0:
        from data_builders.annotations import write_jsonl

        write_jsonl(path, [{"file": _rel(c, folder), "labels": list(c.labels),
                            "caption": captions[_rel(c, folder)]} for c in done])
    return {"metrics": metrics, "label_sets": sets, "captions": str(path), "quarantined": quarantined,
            "settings": {"data": str(folder), "embedder": opts.embedder, "prefix": PREFIX, "prompt": opts.prompt,
                         "n_clips": len(done)}}
