"""Closed-set scoring by option log-likelihood: no parsing, works for any checkpoint, tiny test models included.

Each option is appended as the assistant's answer after the same prompt (and the same media); its score is the sum
of the log-probabilities the model gives the option's tokens. All options of one item go through one batched
forward pass, so the media of the item is encoded once per option row but decoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from recipes.media import MediaSettings
from train.inputs import chat_messages, encode, forward_kwargs


@dataclass(frozen=True)
class OptionScores:
    """Per option: summed log-probability and token count (``mean = logprob / n_tokens`` for length-normalised)."""

    logprob: tuple[float, ...]
    n_tokens: tuple[int, ...]

    def best(self, normalise: bool = False) -> int:
        vals = np.array(self.logprob) / (np.array(self.n_tokens) if normalise else 1)
        return int(np.argmax(vals))


@torch.no_grad()
def score_options(model, processor, media: MediaSettings, prompt: str, options: Sequence[str], *,
                  frames: np.ndarray | None = None, audio: np.ndarray | None = None, image=None) -> OptionScores:
    """Score each option as the answer to ``prompt`` shown with the item's media.

    Args:
        frames: decoded video frames (T,H,W,3); with ``audio`` and ``media.audio_in_video`` the audio is
            interleaved in the video, otherwise ``audio`` is a separate audio input.
        audio: mono waveform at ``media.sample_rate`` (already intervened when the condition asks for it).
        image: a single image (PIL or array) for image-text models and image conditions.
    """
    video = frames is not None
    separate_audio = audio is not None and not (video and media.audio_in_video)
    messages = chat_messages(prompt, video=video, audio=separate_audio, images=int(image is not None))
    head = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tok = processor.tokenizer
    end = tok.eos_token or ""
    texts = [head + opt + end for opt in options]
    n_opt = [len(tok(opt + end, add_special_tokens=False)["input_ids"]) for opt in options]
    batch = encode(processor, media, texts,
                   videos=[frames] * len(options) if video else None,
                   audios=[audio] * len(options) if audio is not None else None,
                   images=[image] * len(options) if image is not None else None,
                   padding_side="right")
    device = next(model.parameters()).device
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    out = model(**batch, **forward_kwargs(media, video and audio is not None))
    logprobs = torch.log_softmax(out.logits.float(), dim=-1)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    scores = []
    for row, k in enumerate(n_opt):
        last = int(mask[row].sum().item())  # right padding: real tokens are [0, last)
        target = ids[row, last - k: last]
        pred = logprobs[row, last - k - 1: last - 1]
        scores.append(float(pred.gather(-1, target[:, None]).sum().item()))
    return OptionScores(logprob=tuple(scores), n_tokens=tuple(n_opt))
