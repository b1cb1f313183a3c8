"""Closed-set scoring by option log-likelihood: no parsing, works for any checkpoint, tiny test models included.

Each option is appended as the assistant's answer after the same prompt (and the same media); its score is the sum
of the log-probabilities the model gives the option's tokens.

The options share everything before them, so it is computed once (a shared prefix):

- the *media prefix* (system turn and the user turn up to the question: the clip's video, audio, image) goes through
  the processor, the encoders and the language model once per clip and condition, and its key/value cache is kept
  in a :class:`SharedMedia` that every question about that clip and condition reuses;
- the question's own text then runs once, on top of that cache;
- the options run together in one batched pass over the cache, each row one option, at the positions the model
  itself gives text after its prompt (multimodal rotary models: the text position plus the ``rope_deltas`` their
  prompt pass computed, as their cached generation does).

The scores equal those of scoring every option as a full sequence (:func:`score_unshared`) up to float rounding.
Where the chat template or tokenizer makes a split unsafe (the tokens of the parts would differ from the tokens of
the whole), the question is scored as one prefix, or every option as a full sequence.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from recipes.media import MediaSettings
from train.inputs import chat_messages, encode, forget_rope_offsets, forward_kwargs, on_model_device


@dataclass(frozen=True)
class OptionScores:
    """Per option: summed log-probability and token count (``mean = logprob / n_tokens`` for length-normalised)."""

    logprob: tuple[float, ...]
    n_tokens: tuple[int, ...]

    def best(self, normalise: bool = False) -> int:
        vals = np.array(self.logprob) / (np.array(self.n_tokens) if normalise else 1)
        return int(np.argmax(vals))


@dataclass
class _Prefix:
    """A prompt prefix run through the model once: its key/value cache, its length, the log-probabilities of the
    token after it, and the rotary offset of text after it (None for models with plain 1-D positions)."""

    cache: Any
    length: int
    next_logprobs: Any
    rope_deltas: Any


class SharedMedia:
    """The media prefixes of the last ``size`` (clip, condition) pairs a suite asked about, each encoded and run
    through the model once and reused by every question on it.

    A suite makes one for its run and passes it to every :func:`score_options` call; items that share a clip and
    condition should be asked one after the other. Entries are keyed by the model, the prefix text and the media's
    bytes, so a different clip, intervention or condition never reuses another's cache. Keep one per run: a model
    whose weights change in place (training) must not meet an old entry.
    """

    def __init__(self, size: int = 1):
        self.size = size
        self._entries: OrderedDict[tuple, _Prefix] = OrderedDict()

    def get(self, key: tuple, build: Callable[[], _Prefix]) -> _Prefix:
        if key not in self._entries:
            self._entries[key] = build()
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return self._entries[key]


def media_digest(*arrays) -> str:
    """Content identity of in-memory media (frames, waveforms, images; None skipped): shapes, dtypes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}:{a.dtype}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def score_options(model, processor, media: MediaSettings, prompt: str, options: Sequence[str], *,
                  frames: np.ndarray | None = None, audio: np.ndarray | None = None, image=None,
                  shared: SharedMedia | None = None) -> OptionScores:
    """Score each option as the answer to ``prompt`` shown with the item's media, from one pass of the prompt.

    Args:
        frames: decoded video frames (T,H,W,3); with ``audio`` and ``media.audio_in_video`` the audio is
            interleaved in the video, otherwise ``audio`` is a separate audio input.
        audio: mono waveform at ``media.sample_rate`` (already intervened when the condition asks for it).
        image: a single image (PIL or array) for image-text models and image conditions.
        shared: media prefixes kept across calls (one per suite run): questions on the same clip and condition
            then encode its media once. Without it the prefix is shared by this call's options only.
    """
    import torch

    head = _head(processor, media, prompt, frames, audio, image)
    tok = processor.tokenizer
    end = tok.eos_token or ""
    answers = [_ids(tok, opt + end) for opt in options]
    head_ids = _ids(tok, head)
    if any(_ids(tok, head + opt + end) != head_ids + ids for opt, ids in zip(options, answers)):
        # An answer that merges with the prompt's last token has no clean prefix: score full sequences.
        return score_unshared(model, processor, media, prompt, options, frames=frames, audio=audio, image=image)
    # Without a SharedMedia nothing outlives this call: the whole prompt is one prefix (one pass, not two).
    split = _media_split(tok, head, prompt) if shared is not None else len(head)
    digest = media_digest(frames, audio, image)
    key = (id(model), head[:split], digest, media.model_dump_json())

    def build() -> _Prefix:
        return _run_prefix(model, processor, media, head[:split], frames, audio, image, digest)

    with torch.no_grad():
        prefix = (shared or SharedMedia()).get(key, build)
        return _score_after(model, prefix, _ids(tok, head[split:]), answers, tok.pad_token_id or 0,
                            keep=shared is not None)


def _head(processor, media: MediaSettings, prompt: str, frames, audio, image) -> str:
    """The rendered conversation up to the assistant's answer: media placeholders, then ``prompt``."""
    video = frames is not None
    separate_audio = audio is not None and not (video and media.audio_in_video)
    messages = chat_messages(prompt, video=video, audio=separate_audio, images=int(image is not None))
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# Token ids of texts already tokenised, per tokenizer: a question is tokenised whole, in parts and with each option
# (a dozen calls), and the options and media placeholders repeat from question to question.
_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TOKENS_MAX = 50_000  # texts remembered per tokenizer before starting afresh


def _ids(tok, text: str) -> list[int]:
    """``text``'s token ids without special tokens (a list the caller must not modify: it is shared)."""
    try:
        memo = _TOKENS.setdefault(tok, {})
    except TypeError:  # a tokenizer that takes no weak reference is simply not memoised
        return tok(text, add_special_tokens=False)["input_ids"]
    ids = memo.get(text)
    if ids is None:
        if len(memo) >= _TOKENS_MAX:
            memo.clear()
        ids = memo[text] = tok(text, add_special_tokens=False)["input_ids"]
    return ids


def _media_split(tok, head: str, prompt: str) -> int:
    """Where the question's own text starts in the rendered ``head``: everything before it (system turn, media
    placeholders) is the same for every question on a clip. ``len(head)`` (no split) when the prompt does not
    appear verbatim or the two parts would not tokenise to the tokens of the whole."""
    at = head.rfind(prompt) if prompt else -1
    if at <= 0 or _ids(tok, head[:at]) + _ids(tok, head[at:]) != _ids(tok, head):
        return len(head)
    return at


def _rope_owner(model):
    """The module holding the multimodal rotary offset of the last prompt (Qwen-Omni/Qwen-VL ``rope_deltas``)."""
    return next((m for m in model.modules() if getattr(m, "rope_deltas", None) is not None), None)


# Encoded media prefixes (the processor's output), by processor content, text, media bytes and settings, up to
# ENCODED_MAX_BYTES, least recently used first out: `eval watch` asks every checkpoint the same questions about the
# same clips, and the processor's work (frames to patches, waveforms to log-mel features, text to tokens) does not
# depend on the weights. A checkpoint that brings another processor configuration or tokenizer encodes anew.
_ENCODED: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
ENCODED_MAX_BYTES = 256 << 20
_PROCESSOR_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def processor_identity(processor) -> str:
    """Content identity of a processor: its configuration (every sub-processor's settings) and its tokenizer."""
    try:
        return _PROCESSOR_IDS[processor]
    except (KeyError, TypeError):
        pass
    h = hashlib.sha256(processor.to_json_string().encode())
    tok = getattr(processor, "tokenizer", None)
    backend = getattr(tok, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else repr(sorted(tok.get_vocab().items()))).encode())
    ident = h.hexdigest()
    try:
        _PROCESSOR_IDS[processor] = ident
    except TypeError:
        pass
    return ident


def _encode_prefix(processor, media: MediaSettings, text: str, frames, audio, image, digest: str | None):
    """:func:`train.inputs.encode` of one prefix, from :data:`_ENCODED` when this processor content has encoded
    the same text and media before (``digest`` is :func:`media_digest` of the media; None skips the memo)."""
    key = None if digest is None else (processor_identity(processor), text, digest, media.model_dump_json())
    if key in _ENCODED:
        _ENCODED.move_to_end(key)
        return _ENCODED[key][0]
    batch = encode(processor, media, [text], videos=[frames] if frames is not None else None,
                   audios=[audio] if audio is not None else None, images=[image] if image is not None else None)
    if key is not None:
        size = sum(v.numel() * v.element_size() for v in batch.values() if hasattr(v, "numel"))
        _ENCODED[key] = (batch, size)
        while sum(n for _, n in _ENCODED.values()) > ENCODED_MAX_BYTES:
            _ENCODED.popitem(last=False)
    return batch


def _run_prefix(model, processor, media: MediaSettings, text: str, frames, audio, image,
                digest: str | None = None) -> _Prefix:
    """Encode ``text`` with the media and run it through the model once, keeping its key/value cache."""
    import torch

    video = frames is not None
    batch = _encode_prefix(processor, media, text, frames, audio, image, digest)
    batch = on_model_device(model, batch)
    forget_rope_offsets(model)  # a stale offset of an earlier prompt must not pass for this one's
    out = model(**batch, **forward_kwargs(media, video and audio is not None), use_cache=True)
    owner = _rope_owner(model)
    return _Prefix(cache=out.cache, length=int(batch["input_ids"].shape[1]),
                   next_logprobs=torch.log_softmax(out.logits[0, -1].float(), dim=-1),
                   rope_deltas=None if owner is None else owner.rope_deltas.detach().clone())


def _positions(prefix: _Prefix, start: int, n: int, rows: int, device):
    """Positions of ``n`` text tokens from sequence index ``start`` on, for ``rows`` rows: plain indices, and for
    multimodal rotary models the (text, temporal, height, width) rows their cached generation builds: text after
    the prompt advances all three rotary axes together, offset by the prompt's ``rope_deltas``."""
    import torch

    text = torch.arange(start, start + n, device=device).expand(rows, n)
    if prefix.rope_deltas is None:
        return text
    rope = (text + prefix.rope_deltas.to(device)).unsqueeze(0).expand(3, rows, n)
    return torch.cat([text.unsqueeze(0), rope])


def _score_after(model, prefix: _Prefix, tail: list[int], answers: list[list[int]], pad_id: int,
                 keep: bool = True) -> OptionScores:
    """Run the question's ``tail`` once on the prefix cache, then every answer in one batch over it. With ``keep``
    the prefix's own cache is left as it was (the pass runs on a copy) for the next question on the same media."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    cache = DynamicCache(list(prefix.cache)) if keep else prefix.cache
    first = prefix.next_logprobs
    if tail:
        out = model(input_ids=torch.tensor([tail], device=device), cache=cache, use_cache=True,
                    position_ids=_positions(prefix, prefix.length, len(tail), 1, device))
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    start = prefix.length + len(tail)
    longest = max(len(a) for a in answers)
    scores = [float(first[a[0]]) if a else 0.0 for a in answers]
    if longest > 1:
        # Each answer but its last token (whose prediction of what follows is not scored), right-padded: under the
        # causal mask a real token never sees the padding after it.
        cache.batch_repeat_interleave(len(answers))
        ids = torch.tensor([a[:-1] + [pad_id] * (longest - len(a)) for a in answers], device=device)
        out = model(input_ids=ids, cache=cache, use_cache=True,
                    position_ids=_positions(prefix, start, longest - 1, len(answers), device))
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        for row, a in enumerate(answers):
            if len(a) > 1:
                target = torch.tensor(a[1:], device=device)
                scores[row] += float(logprobs[row, :len(a) - 1].gather(-1, target[:, None]).sum())
    return OptionScores(logprob=tuple(scores), n_tokens=tuple(len(a) for a in answers))


def score_unshared(model, processor, media: MediaSettings, prompt: str, options: Sequence[str], *,
                   frames: np.ndarray | None = None, audio: np.ndarray | None = None, image=None) -> OptionScores:
    """:func:`score_options` with every option a full sequence (prompt, media and answer, one batched pass): the
    reference the shared prefix is checked against, and the path for prompts that cannot be split."""
    import torch

    video = frames is not None
    head = _head(processor, media, prompt, frames, audio, image)
    tok = processor.tokenizer
    end = tok.eos_token or ""
    texts = [head + opt + end for opt in options]
    n_opt = [len(_ids(tok, opt + end)) for opt in options]
    batch = encode(processor, media, texts,
                   videos=[frames] * len(options) if video else None,
                   audios=[audio] * len(options) if audio is not None else None,
                   images=[image] * len(options) if image is not None else None,
                   padding_side="right")
    batch = on_model_device(model, batch)
    with torch.no_grad():
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
