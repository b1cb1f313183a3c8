"""A Harken checkpoint as an lmms-eval model: lmms-eval asks, Harken answers with the model ``eval run`` loaded.

Imported only by the ``lmms_eval`` suite (:mod:`eval.general`) and by lmms-eval's own command line (the ``harken``
model, registered through the ``lmms_eval.models`` entry point), so nothing else needs lmms-eval installed.
Each answer is computed the way every Harken suite computes one: the clip decoded with the recipe's media block
(fps, frame cap, pixel budget, sample rate), encoded by :func:`train.inputs.encode`, answered greedily, and kept in
the checkpoint's prediction cache under the document, its prompt and its media files, so an interrupted evaluation
resumes where it stopped and a repeated one makes no model call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lmms_eval.api.model import lmms

from eval.context import EvalContext, media_identity

SUITE = "lmms_eval"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}


def until_cut(text: str, until: list[str]) -> str:
    """``text`` up to the first of lmms-eval's stop strings (a generation may run past one)."""
    cut = len(text)
    for stop in until:
        if stop and stop in text:
            cut = min(cut, text.index(stop))
    return text[:cut]


def visual_identity(visual: Any) -> str:
    """Content identity of one of a document's inputs: a media file's (:func:`media_identity`), a waveform's bytes
    and rate, else its type (an input the model then refuses by name)."""
    import hashlib

    if isinstance(visual, (str, Path)):
        return media_identity(visual)
    if isinstance(visual, dict) and "array" in visual:
        wave = np.ascontiguousarray(visual["array"], dtype=np.float32)
        return f"{visual.get('sampling_rate')}:{hashlib.sha256(wave.tobytes()).hexdigest()[:16]}"
    return type(visual).__name__


class HarkenLmms(lmms):
    """lmms-eval's model interface over the checkpoint of an :class:`EvalContext`.

    Answers ``generate_until`` requests whose visual is one video file (frames and its sound; silence when it has
    no audio stream) or one waveform (lmms-eval's ``{"array", "sampling_rate"}``). Decoding is greedy, as the
    general video benchmarks (Video-MME, LVBench, WorldSense) ask.
    """

    def __init__(self, ctx: EvalContext, max_new_tokens: int | None = None):
        super().__init__()
        self.ctx = ctx
        self.max_new_tokens = max_new_tokens

    def _inputs(self, visuals: list) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(frames or None, waveform at the media block's rate or None) of one document; no waveform for a model
        without audio input (it sees a video's frames only).

        Raises:
            FileNotFoundError: the video is not on disk.
            ValueError: anything but one video file or one waveform, or a waveform for a model that cannot hear.
        """
        from data_builders.media import load_audio, load_frames
        from train.inputs import takes_audio

        media, hears = self.ctx.media, takes_audio(self.ctx.processor)
        one = visuals[0] if len(visuals) == 1 else None
        if isinstance(one, (str, Path)) and Path(one).suffix.lower() in VIDEO_SUFFIXES:
            if not Path(one).is_file():
                raise FileNotFoundError(f"{one}: the task's video is not on disk (lmms-eval's doc_to_visual gave "
                                        "this path; download the benchmark or point the task at the clips)")
            frames, _, duration = load_frames(one, media)
            if not hears:
                return frames, None
            audio, _ = load_audio(one, media.sample_rate, max_seconds=min(duration, media.max_clip_seconds) or None,
                                  missing="silence")
            return frames, audio
        if isinstance(one, dict) and "array" in one and hears:
            import librosa

            wave = np.asarray(one["array"], dtype=np.float32)
            sr = int(one["sampling_rate"])
            return None, librosa.resample(wave, orig_sr=sr, target_sr=media.sample_rate) if sr != media.sample_rate \
                else wave
        kinds = [type(v).__name__ for v in visuals]
        raise ValueError(f"the Harken model answers documents with one video file, or one waveform when it takes "
                         f"audio; this one gives {kinds or 'no visual'} (image and multi-video tasks are not "
                         "supported)")

    def _answer(self, request) -> str:
        from eval.caption_classification import generate_text

        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        doc = self.task_dict[task][split][doc_id]
        try:
            visuals = doc_to_visual(doc) or []
        except SystemExit as exc:  # some bundled tasks exit the process on a missing video; one suite must not
            raise FileNotFoundError(f"{task}, document {doc_id}: {exc}") from None
        max_new = int(gen_kwargs.get("max_new_tokens", 32))
        if self.max_new_tokens is not None:
            max_new = min(max_new, self.max_new_tokens)
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        settings = {"context": context, "max_new_tokens": max_new, "until": until}
        inputs = [visual_identity(v) for v in visuals]  # a changed clip is answered again; decoding waits for a miss

        def compute() -> str:
            frames, audio = self._inputs(visuals)
            text = generate_text(self.ctx.model, self.ctx.processor, self.ctx.media, context, audio, frames, max_new)
            return until_cut(text, until)

        return self.ctx.cached(SUITE, f"{task}/{split}/{doc_id}", settings, compute, inputs)

    def generate_until(self, requests) -> list[str]:
        """One greedy answer per request, in request order."""
        return [self._answer(r) for r in requests]

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise NotImplementedError("the Harken model answers generate_until tasks (Video-MME, LVBench, WorldSense "
                                  "and most video benchmarks); this task asks for log-likelihoods")

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the Harken model answers single-turn generate_until tasks; this task is "
                                  "multi-round")

    @property
    def device(self) -> Any:
        return next(self.ctx.model.parameters()).device


class HarkenCheckpoint(HarkenLmms):
    """The ``harken`` model of lmms-eval's own command line, for its launcher and options::

        lmms-eval --model harken --model_args checkpoint=runs/NAME/dpo/checkpoint-500 --tasks videomme

    ``model_args``: ``checkpoint`` (what ``eval run --checkpoint`` takes), ``recipe`` (whose media block to use when
    the checkpoint has no ``recipe.yaml``), ``max_new_tokens`` (a cap) and ``cache`` (the prediction-cache folder;
    default ``<checkpoint>/eval/cache``, the one ``eval run`` uses, so answers are shared between the two).
    Under lmms-eval's multi-process launch each process uses its own GPU and cache file.
    """

    def __init__(self, checkpoint: str, recipe: str | None = None, max_new_tokens: int | None = None,
                 cache: str | None = None, batch_size: int | str | None = None, max_batch_size: int | None = None,
                 device: str | None = None):  # lmms-eval's launcher arguments: one request at a time, local_device()
        import os

        import torch

        from eval.checkpoint import checkpoint_recipe, load_checkpoint
        from eval.context import PredictionCache
        from eval.runner import CACHE_DIR, eval_dtype
        from recipes.schema import load_recipe
        from train.runtime import local_device

        if cache is None and not Path(checkpoint).is_dir():
            raise ValueError(f"checkpoint={checkpoint} is not a folder: name the prediction cache folder with "
                             "cache=DIR")
        given = load_recipe(recipe) if recipe else None
        rec = (checkpoint_recipe(checkpoint) if Path(checkpoint).is_dir() else None) or given
        dtype = eval_dtype(rec)
        loaded = load_checkpoint(checkpoint, recipe=given,
                                 dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
        loaded.model.to(local_device())
        folder = Path(cache) if cache else Path(checkpoint) / "eval" / CACHE_DIR
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        own = folder / (f"predictions.rank{rank}.jsonl" if world > 1 else "predictions.jsonl")
        # The fingerprint carries the dtype as eval run's does: bf16 and fp32 answers are different predictions.
        ctx = EvalContext(checkpoint=Path(checkpoint), fingerprint=f"{loaded.fingerprint}:{dtype}",
                          model=loaded.model, processor=loaded.processor, media=loaded.media, out_dir=folder.parent,
                          cache=PredictionCache(own, also_read=tuple(sorted(folder.glob("predictions*.jsonl")))),
                          seed=rec.seed if rec is not None else 0)
        super().__init__(ctx, max_new_tokens=None if max_new_tokens is None else int(max_new_tokens))


def lmms_eval_models():
    """The ``lmms_eval.models`` entry point: registers :class:`HarkenCheckpoint` as lmms-eval's ``harken`` model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="harken", simple_class_path="eval.lmms_model.HarkenCheckpoint")
