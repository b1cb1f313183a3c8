"""Turn conversations plus decoded media into model inputs: the one place the Omni processor is called.

Training collators and evaluation suites both go through :func:`encode`, so fps, pixel budget, sample rate and
the audio-in-video flag always come from the recipe's media block, never from processor defaults; audio is padded
to the batch's own length (capped by the media block), never to the feature extractor's 300 s maximum.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from recipes.media import MediaSettings


def videos_kwargs(media: MediaSettings) -> dict:
    """Video-processor arguments for frames already sampled by the media loader."""
    return {
        "fps": media.fps,
        "do_sample_frames": False,  # the loader already sampled at media.fps; sampling twice would drop frames
        # transformers 5.x reads the pixel budget from `size` (min_pixels/max_pixels kwargs are deprecated).
        "size": {"shortest_edge": media.min_pixels, "longest_edge": media.max_pixels},
        "cap_pixels_per_frame": True,
    }


def encode(processor, media: MediaSettings, texts: Sequence[str], videos: Sequence[np.ndarray] | None = None,
           audios: Sequence[np.ndarray] | None = None, images: Sequence | None = None, padding_side: str = "right"):
    """Tokenise ``texts`` (already chat-templated, one video placeholder each when ``videos`` is given) with one
    video and its own (possibly intervened) waveform per text.

    With ``media.audio_in_video`` the waveform is interleaved with the frames (TMRoPE); the model's ``forward``
    must then get ``use_audio_in_video=True`` (see :func:`forward_kwargs`).
    Returns the processor's ``BatchFeature`` with torch tensors.
    """
    kwargs: dict = {"text": list(texts), "return_tensors": "pt", "padding": True, "padding_side": padding_side}
    if images is not None:
        kwargs["images"] = list(images)
        from train.vlm import image_kwargs

        kwargs["images_kwargs"] = image_kwargs(processor, media)
    if videos is not None:
        kwargs["videos"] = list(videos)
        kwargs["videos_kwargs"] = videos_kwargs(media)
        if audios is not None:
            if len(audios) != len(videos):
                raise ValueError(f"{len(videos)} videos but {len(audios)} audio tracks: give one track per video")
            kwargs["audio"] = clip_audio(audios, media)
            if media.audio_in_video:
                kwargs["audio_from_video_indices"] = list(range(len(videos)))
                kwargs["load_audio_from_video"] = True
    elif audios is not None:
        kwargs["audio"] = clip_audio(audios, media)
    if "audio" in kwargs:
        kwargs["audio_kwargs"] = {"sampling_rate": media.sample_rate,
                                  "max_length": audio_pad_length(processor, kwargs["audio"])}
    return processor(**kwargs)


def clip_audio(audios: Sequence[np.ndarray], media: MediaSettings) -> list[np.ndarray]:
    """Float32 waveforms cut at the media block's clip cap (``max_clip_seconds`` at ``sample_rate``); the loader
    already decodes no more than that, so this only bounds waveforms built elsewhere."""
    limit = int(round(media.max_clip_seconds * media.sample_rate))
    return [np.asarray(a, dtype=np.float32)[:limit] for a in audios]


def audio_pad_length(processor, audios: Sequence[np.ndarray]) -> int:
    """Samples to pad a batch's waveforms to: the longest one plus one STFT window, in whole hops.

    Qwen2.5-Omni's processor pads every waveform to its feature extractor's maximum (300 s in the released
    config) and the audio encoder then drops the padded frames, so a 3 s clip cost 100x its features. Padding to
    the batch's own length is enough. The extra window matters: without it the last real frame's STFT window
    reflects the signal instead of seeing zeros, and frames straddling the end drop out of the per-clip log-mel
    maximum, so features would differ slightly; with it they are bit-identical to the long padding.
    """
    fe = processor.feature_extractor
    hop, n_fft = int(getattr(fe, "hop_length", 160)), int(getattr(fe, "n_fft", 400))
    longest = max((len(a) for a in audios), default=0) + n_fft
    return -(-longest // hop) * hop


def takes_audio(processor) -> bool:
    """Whether the processor encodes audio (Qwen-Omni thinkers: a Whisper feature extractor; Qwen2.5-VL: none)."""
    return getattr(processor, "feature_extractor", None) is not None


def forward_kwargs(media: MediaSettings, has_video_audio: bool) -> dict:
    """Extra ``forward``/``generate`` arguments that must agree with how inputs were encoded."""
    return {"use_audio_in_video": bool(media.audio_in_video and has_video_audio)}


def on_model_device(model, batch: dict) -> dict:
    """``batch`` with its tensors moved to the device of ``model``'s weights (the processor builds them on the CPU)."""
    device = next(model.parameters()).device
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def forget_rope_offsets(model) -> None:
    """Drop the multimodal rotary offset (Qwen-Omni/Qwen-VL ``rope_deltas``) a model keeps from its last prompt, so
    that a fresh forward of another prompt computes its own instead of reusing a stale one."""
    for m in model.modules():
        if getattr(m, "rope_deltas", None) is not None:
            m.rope_deltas = None


def chat_messages(prompt: str, answer: str | None = None, video: bool = True, audio: bool = False,
                  images: int = 0) -> list[dict]:
    """A single-turn conversation in the processor's content-list format: the clip (when ``video``), ``images``
    image placeholders and a separate audio item (when ``audio``: the track is not interleaved with the video)
    before the prompt in the user turn (Qwen's own order), and the assistant's ``answer`` when given.

    Training collators and evaluation build their texts from this, so both show the model the same layout.
    """
    content: list[dict] = [{"type": "video"}] if video else []
    content += [{"type": "image"}] * images
    if audio:
        content.append({"type": "audio"})
    content.append({"type": "text", "text": prompt})
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def chat_prompt_and_completion(processor, prompt: str, answer: str, video: bool = True,
                               audio: bool = False, images: int = 0) -> tuple[str, str]:
    """Render (prompt text ending with the assistant header, completion text) with the processor's chat template.

    ``prompt + completion`` is exactly the rendered conversation, so the completion's tokens are the ones the loss
    sees. Raises:
        ValueError: the template renders the prompt differently with and without the answer (then no prefix split
            exists and prompt masking would be wrong).
    """
    head = processor.apply_chat_template(chat_messages(prompt, None, video, audio, images), tokenize=False,
                                         add_generation_prompt=True)
    full = processor.apply_chat_template(chat_messages(prompt, answer, video, audio, images), tokenize=False)
    if not full.startswith(head):
        raise ValueError("the chat template renders the prompt differently once an answer follows; prompt tokens "
                         "cannot be masked reliably. Use a template whose generation prompt is a prefix of the "
                         f"full conversation (got head {head[-40:]!r} vs full {full[:len(head)][-40:]!r})")
    return head, full[len(head):]


def generate_texts(model, processor, media: MediaSettings, prompts: Sequence[str],
                   videos: Sequence[np.ndarray] | None = None, audios: Sequence[np.ndarray] | None = None,
                   max_new_tokens: int = 64, temperature: float = 0.0) -> list[str]:
    """Answers of ``model`` to ``prompts``, each about its own clip (``videos[i]`` frames and/or ``audios[i]``
    waveform; None leaves that modality out for every row), generated together in one left-padded batch.

    Greedy at temperature 0, sampled above it. Left padding lets every row continue from its own last real token,
    and the attention mask and the multimodal positions ignore the pads, so a greedy answer is the one the row gets
    alone. One decoding step costs much the same for a few rows as for one (on the tiny CPU models, sixteen answers
    in one call take under a quarter of the time of sixteen calls). Batched kernels may round differently from
    single-row ones, so on a near-tie between two tokens (likelier in bf16) a batched answer can differ, as with any
    batched decoding.
    """
    import torch

    video = videos is not None
    separate = audios is not None and not (video and media.audio_in_video)
    texts = [processor.apply_chat_template(chat_messages(p, video=video, audio=separate), tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    batch = encode(processor, media, texts, videos=videos, audios=audios, padding_side="left")
    batch = on_model_device(model, batch)
    # Without audio there is no interleaving to tell the model about (and a model without audio input refuses the
    # argument in generate).
    extra = forward_kwargs(media, video) if audios is not None else {}
    sampling = {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature}
    with torch.no_grad():
        out = model.generate(**batch, **extra, max_new_tokens=max_new_tokens, **sampling)
    new = out[:, batch["input_ids"].shape[1]:]
    return [a.strip() for a in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
