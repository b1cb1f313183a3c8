"""Audio is encoded at its own length: a processor configured for 300 s (as the released Qwen2.5-Omni one is)
yields features sized to the clip, and the model's outputs are those of the fully padded input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_builders.annotations import read_annotations
from data_builders.media import load_clip
from recipes import MediaSettings
from train.backbones import TINY_BACKBONES, load_backbone
from train.inputs import chat_messages, encode, forward_kwargs, videos_kwargs

MEDIA = MediaSettings(fps=2.0, max_frames=4, max_pixels=28 * 28 * 16, max_clip_seconds=4.0)
RELEASED_SECONDS = 300  # chunk_length of the released Qwen2.5-Omni preprocessor config


def _as_released(processor):
    """Give the tiny processor's Whisper feature extractor the released config's 300 s maximum."""
    fe = processor.feature_extractor
    fe.chunk_length = RELEASED_SECONDS
    fe.n_samples = RELEASED_SECONDS * fe.sampling_rate
    fe.nb_max_frames = fe.n_samples // fe.hop_length
    return processor


def _setup(name, tiny_backbones, synth_dir):
    """(model, processor with the released 300 s maximum, texts, videos, audio tracks) for one tiny backbone."""
    model, processor = load_backbone(str(tiny_backbones[name]))
    processor = _as_released(processor)
    clip = load_clip(read_annotations(synth_dir / "annotations.jsonl")[0].path, MEDIA)
    text = processor.apply_chat_template(chat_messages("Is the sound in sync?", "Yes."), tokenize=False)
    # Two loud noise tracks of different lengths in one batch (the shorter one is still padded, to the longer one),
    # each a whole number of hops long: then the last real frame's STFT window runs past the signal, which is where
    # padding to the bare length would differ from the long padding.
    rng = np.random.default_rng(0)
    tracks = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (32000, 12320)]
    return model, processor, [text, text], [clip.frames, clip.frames], tracks


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_features_are_sized_to_the_clip_not_the_extractor_maximum(name, tiny_backbones, synth_dir):
    _, processor, texts, videos, audios = _setup(name, tiny_backbones, synth_dir)
    batch = encode(processor, MEDIA, texts, videos, audios)
    fe = processor.feature_extractor
    longest = max(len(a) for a in audios)
    frames = batch["input_features"].shape[-1]
    assert longest // fe.hop_length <= frames <= (longest + fe.n_fft) // fe.hop_length + 1
    assert frames < MEDIA.max_clip_seconds * MEDIA.sample_rate // fe.hop_length + 4  # never the 30000 of 300 s
    mask = batch["feature_attention_mask"]
    assert mask.shape[-1] == frames
    assert mask.sum(-1).tolist() == [-(-len(a) // fe.hop_length) for a in audios]


def test_media_cap_bounds_the_audio(tiny_backbones, synth_dir):
    _, processor, texts, videos, audios = _setup("tiny-qwen2.5-omni", tiny_backbones, synth_dir)
    capped = MediaSettings(**{**MEDIA.model_dump(), "max_clip_seconds": 0.5})
    batch = encode(processor, capped, texts[:1], videos[:1], audios[:1])
    assert batch["feature_attention_mask"].sum().item() == 8000 // processor.feature_extractor.hop_length


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_log_probs_equal_those_of_the_fully_padded_input(name, tiny_backbones, synth_dir):
    model, processor, texts, videos, audios = _setup(name, tiny_backbones, synth_dir)
    ours = encode(processor, MEDIA, texts, videos, audios)
    # What the processor does on its own: every waveform padded to the extractor's maximum (Qwen2.5-Omni).
    padded = processor(text=texts, videos=videos, audio=audios, return_tensors="pt", padding=True,
                       padding_side="right", audio_from_video_indices=[0, 1], load_audio_from_video=True,
                       videos_kwargs=videos_kwargs(MEDIA),
                       audio_kwargs={"sampling_rate": MEDIA.sample_rate})
    if name == "tiny-qwen2.5-omni":
        assert padded["input_features"].shape[-1] == 30000
    assert torch.equal(ours["input_ids"], padded["input_ids"])
    assert torch.equal(ours["feature_attention_mask"].sum(-1), padded["feature_attention_mask"].sum(-1))
    n = ours["input_features"].shape[-1]
    assert torch.equal(ours["input_features"], padded["input_features"][..., :n])  # the rest is dropped padding
    with torch.no_grad():
        a = model(**ours, **forward_kwargs(MEDIA, True)).logits.log_softmax(-1)
        b = model(**padded, **forward_kwargs(MEDIA, True)).logits.log_softmax(-1)
    assert torch.allclose(a, b, rtol=0, atol=1e-6), (a - b).abs().max()
