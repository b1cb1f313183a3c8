"""Collators: dataset rows (``SFTSample`` / ``PreferencePair`` as dicts) -> Omni thinker batches.

Each row's clip is decoded with the recipe's media settings (frames once per clip per call), each row's own
(possibly intervened) waveform is built with :func:`data_builders.interventions.intervened_audio`, texts are
rendered with the processor's chat template (the video placeholder in the user turn), and everything goes through
:func:`train.inputs.encode` with the audio interleaved in the video. Only answer tokens carry loss: prompt and
padding positions are ``-100`` in ``labels`` (SFT) or 0 in ``completion_mask`` (DPO, TRL's convention).

A DPO batch holds the chosen sequences first, then the rejected ones (what TRL's ``DPOTrainer`` splits with
``chunk(2)``); a pair's two sides may carry different audio. When both sides of every pair hear the same audio, the
batch is packed (one sequence per pair, prompt and media once; :mod:`train.shared_prefix`).

:class:`ImageSFTCollator` is the still-image counterpart (``ImageSFTSample`` rows: the spectrogram benchmark's
finetuning), for vision-language models and omni thinkers alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from data_builders.interventions import Intervention, intervened_audio
from data_builders.media import load_frames
from data_builders.records import ImageSFTSample, PreferencePair, SFTSample
from recipes.media import MediaSettings
from train.inputs import chat_prompt_and_completion, encode, forward_kwargs


@dataclass(frozen=True)
class EncodedRow:
    """One sequence to encode: the clip, the audio condition the model hears, prompt and answer."""

    video: str
    start: float
    end: float | None
    intervention: Intervention
    prompt: str
    answer: str


class ClipCache:
    """Decoded frames and intervened waveforms of the clips of one batch, keyed by file and condition."""

    def __init__(self, media: MediaSettings, base_dir: str | Path | None = None):
        self.media = media
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self._frames: dict[tuple, np.ndarray] = {}
        self._audio: dict[tuple, np.ndarray] = {}

    def _path(self, video: str) -> Path:
        p = Path(video)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p

    def frames(self, video: str, start: float = 0.0, end: float | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of the clip (or of its [start, end) segment)."""
        key = (str(self._path(video)), start, end)
        if key not in self._frames:
            # A segment is sampled as a clip of its own after a seek: only its span is decoded.
            self._frames[key] = load_frames(self._path(video), self.media, start, end)[0]
        return self._frames[key]

    def audio(self, video: str, spec: Intervention, start: float = 0.0, end: float | None = None) -> np.ndarray:
        """Mono float32 waveform at the recipe's sample rate with ``spec`` applied (segment-sliced when asked)."""
        key = (str(self._path(video)), spec.model_dump_json(), start, end)
        if key not in self._audio:
            sr = self.media.sample_rate
            self._audio[key] = intervened_audio(self._path(video), spec, sr, max_seconds=self.media.max_clip_seconds,
                                                base_dir=self.base_dir, start=start, end=end)
        return self._audio[key]


def _completion_mask(tokenizer, batch, completions: Sequence[str]) -> torch.Tensor:
    """1 on each row's completion tokens (the last tokens before its right padding), 0 elsewhere.

    Raises:
        ValueError: when the encoded sequence does not end with the completion's own tokens (a tokenizer that
            merges across the prompt/answer boundary), since the mask would then cover the wrong tokens.
    """
    ids, attn = batch["input_ids"], batch["attention_mask"]
    mask = torch.zeros_like(ids)
    for i, text in enumerate(completions):
        want = tokenizer(text, add_special_tokens=False)["input_ids"]
        length = int(attn[i].sum())
        if attn[i, :length].sum() != length:
            raise ValueError("collators pad on the right; got a left-padded batch")
        got = ids[i, length - len(want): length].tolist()
        if got != want:
            raise ValueError(f"row {i}: the encoded sequence does not end with its answer's tokens ({got[-8:]} vs "
                             f"{want[-8:]}); the tokenizer merges across the prompt/answer boundary")
        mask[i, length - len(want): length] = 1
    return mask


@dataclass
class _OmniCollator:
    processor: Any
    media: MediaSettings
    base_dir: str | Path | None = None
    _pad_side: str = field(default="right", init=False)

    def _encode(self, rows: Sequence[EncodedRow]):
        cache = ClipCache(self.media, self.base_dir)  # decoded once per clip within this call
        videos = [cache.frames(r.video, r.start, r.end) for r in rows]
        audios = [cache.audio(r.video, r.intervention, r.start, r.end) for r in rows]
        # Without audio-in-video the track is its own item in the user turn (it then needs its own placeholder).
        separate_audio = not self.media.audio_in_video
        heads, tails = zip(*(chat_prompt_and_completion(self.processor, r.prompt, r.answer, audio=separate_audio)
                             for r in rows))
        texts = [h + t for h, t in zip(heads, tails)]
        batch = encode(self.processor, self.media, texts, videos, audios, padding_side=self._pad_side)
        completion = _completion_mask(self.processor.tokenizer, batch, tails)
        out = dict(batch)
        out.update(forward_kwargs(self.media, has_video_audio=True))
        return out, completion


@dataclass
class SFTCollator(_OmniCollator):
    """Rows of ``SFTSample`` -> ``input_ids``, ``attention_mask``, ``labels`` (answer tokens only), the processor's
    video/audio tensors and ``use_audio_in_video``."""

    def __call__(self, rows: list[dict]) -> dict:
        samples = [SFTSample.model_validate(r) for r in rows]
        enc = [EncodedRow(s.video, s.start, s.end, s.intervention, s.prompt, s.answer) for s in samples]
        out, completion = self._encode(enc)
        out["labels"] = out["input_ids"].masked_fill(completion == 0, -100)
        return out


# Columns TRL adds to each row when it precomputes the reference's log-probs (``precompute_ref_log_probs``).
REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def _answer_ids(tokenizer, head: str, tail: str) -> list[int]:
    """Token ids of the answer ``tail`` after the prompt ``head``, checked to be exactly how ``head + tail``
    tokenises (no token merges across the boundary), so a prompt encoded alone can be followed by these ids.

    Raises:
        ValueError: when the tokenizer merges across the prompt/answer boundary.
    """
    want = tokenizer(tail, add_special_tokens=False)["input_ids"]
    full = tokenizer(head + tail, add_special_tokens=False)["input_ids"]
    if full[len(full) - len(want):] != want or full[:len(full) - len(want)] != \
            tokenizer(head, add_special_tokens=False)["input_ids"]:
        raise ValueError(f"the prompt and the answer {tail[:40]!r} do not tokenise apart; the tokenizer merges "
                         "across the prompt/answer boundary (set the stage's shared_prefix: false)")
    return want


def _right_padded(rows: Sequence[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of 1-D id tensors padded on the right to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return ids, mask


@dataclass
class DPOCollator(_OmniCollator):
    """Rows of ``PreferencePair`` -> a DPO batch with ``completion_mask``, the processor's video/audio tensors and
    ``use_audio_in_video``; TRL's precomputed ``ref_chosen_logps``/``ref_rejected_logps`` columns pass through.

    With ``shared_prefix`` (the default) and both sides of every pair of the batch hearing the same audio, each pair
    is encoded once as one packed sequence ``prompt + chosen + rejected`` (media processed once per pair; see
    :mod:`train.shared_prefix`) and TRL gets its unfolded view. Otherwise (or when any pair's sides differ in their
    audio) 2B full sequences: chosen rows, then rejected rows, each side with its own intervened audio.
    """

    shared_prefix: bool = True

    def __call__(self, rows: list[dict]) -> dict:
        reference = {k: torch.tensor([float(r[k]) for r in rows]) for k in REFERENCE_COLUMNS if k in rows[0]}
        pairs = [PreferencePair.model_validate({k: v for k, v in r.items() if k not in REFERENCE_COLUMNS})
                 for r in rows]
        if self.shared_prefix and all(p.chosen_intervention == p.rejected_intervention for p in pairs):
            out = self._encode_packed(pairs)
        else:
            chosen = [EncodedRow(p.video, p.start, p.end, p.chosen_intervention, p.prompt, p.chosen)
                      for p in pairs]
            rejected = [EncodedRow(p.video, p.start, p.end, p.rejected_intervention, p.prompt, p.rejected)
                        for p in pairs]
            out, completion = self._encode(chosen + rejected)
            out["completion_mask"] = completion
        out.update(reference)
        return out

    def _encode_packed(self, pairs: Sequence[PreferencePair]) -> dict:
        from train.shared_prefix import PACKED_IDS, SEGMENTS

        cache = ClipCache(self.media, self.base_dir)
        videos = [cache.frames(p.video, p.start, p.end) for p in pairs]
        audios = [cache.audio(p.video, p.chosen_intervention, p.start, p.end) for p in pairs]
        separate_audio = not self.media.audio_in_video
        tokenizer = self.processor.tokenizer
        heads, answers = [], []
        for p in pairs:
            head, chosen = chat_prompt_and_completion(self.processor, p.prompt, p.chosen, audio=separate_audio)
            _, rejected = chat_prompt_and_completion(self.processor, p.prompt, p.rejected, audio=separate_audio)
            heads.append(head)
            answers.append([torch.tensor(_answer_ids(tokenizer, head, t), dtype=torch.long)
                            for t in (chosen, rejected)])
        batch = encode(self.processor, self.media, heads, videos, audios, padding_side="right")
        prompts = [ids[mask.bool()] for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        pad = tokenizer.pad_token_id
        packed, _ = _right_padded([torch.cat([q, c, r]) for q, (c, r) in zip(prompts, answers)], pad)
        # TRL's rows (train.shared_prefix.unfold_index): prompt + chosen, then the prompt's last token + rejected.
        rows = [torch.cat([q, c]) for q, (c, _) in zip(prompts, answers)]
        rows += [torch.cat([q[-1:], r]) for q, (_, r) in zip(prompts, answers)]
        ids, mask = _right_padded(rows, pad)
        completion = torch.zeros_like(ids)
        for i, (q, (c, r)) in enumerate(zip(prompts, answers)):
            completion[i, len(q):len(q) + len(c)] = 1
            completion[len(pairs) + i, 1:1 + len(r)] = 1
        out = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        out.update(input_ids=ids, attention_mask=mask, completion_mask=completion, **{PACKED_IDS: packed})
        out[SEGMENTS] = torch.tensor([[len(q), len(c), len(r)] for q, (c, r) in zip(prompts, answers)])
        out.update(forward_kwargs(self.media, has_video_audio=True))
        return out


@dataclass
class ImageSFTCollator:
    """Rows of ``ImageSFTSample`` -> ``input_ids``, ``attention_mask``, ``labels`` (answer tokens only) and the
    processor's image tensors; the pixel budget comes from the recipe's media block."""

    processor: Any
    media: MediaSettings
    base_dir: str | Path | None = None

    def _image(self, path: str):
        from PIL import Image

        p = Path(path)
        if not p.is_absolute() and self.base_dir is not None:
            p = Path(self.base_dir) / p
        with Image.open(p) as im:
            return im.convert("RGB")

    def __call__(self, rows: list[dict]) -> dict:
        samples = [ImageSFTSample.model_validate(r) for r in rows]
        heads, tails = zip(*(chat_prompt_and_completion(self.processor, s.prompt, s.answer, video=False,
                                                        images=len(s.images)) for s in samples))
        images = [self._image(p) for s in samples for p in s.images]
        batch = encode(self.processor, self.media, [h + t for h, t in zip(heads, tails)], images=images,
                       padding_side="right")
        out = dict(batch)
        out["labels"] = out["input_ids"].masked_fill(_completion_mask(self.processor.tokenizer, batch, tails) == 0,
                                                     -100)
        return out
