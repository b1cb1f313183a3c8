"""Tiny Omni thinkers: built offline, loaded through from_pretrained, trainable through both towers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_builders.annotations import read_annotations
from data_builders.media import load_clip
from recipes import MediaSettings
from train.backbones import TINY_BACKBONES, load_backbone, resolve_backbone
from train.inputs import encode, forward_kwargs

MEDIA = MediaSettings(fps=2.0, max_frames=8, max_pixels=28 * 28 * 16)


def _conversation(processor, answer: str) -> str:
    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Is the sound in sync?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    return processor.apply_chat_template(messages, tokenize=False)


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_audio_in_video_forward_reaches_both_towers(name, tiny_backbones, synth_dir):
    model, processor = load_backbone(str(tiny_backbones[name]))
    clip = load_clip(read_annotations(synth_dir / "annotations.jsonl")[0].path, MEDIA)
    batch = encode(processor, MEDIA, [_conversation(processor, "The audio is in sync.")], [clip.frames], [clip.audio])
    ids = batch["input_ids"][0].tolist()
    # Audio-in-video: the audio placeholders sit inside the video's span, between the vision markers.
    vision_bos = processor.tokenizer.convert_tokens_to_ids(processor.vision_bos_token)
    vision_eos = processor.tokenizer.convert_tokens_to_ids(processor.vision_eos_token)
    span = ids[ids.index(vision_bos): ids.index(vision_eos)]
    assert processor.audio_token_id in span and processor.video_token_id in span

    out = model(**batch, labels=batch["input_ids"].clone(), **forward_kwargs(MEDIA, True))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for tower in ("audio_tower", "visual"):
        grads = [p.grad for n, p in model.named_parameters() if f".{tower}." in f".{n}" and p.grad is not None]
        assert grads, f"no gradient reached {tower}"
        assert sum(g.abs().sum().item() for g in grads) > 0, f"zero gradient in {tower}"


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_save_load_round_trip(name, tiny_backbones, tmp_path, synth_dir):
    model, processor = load_backbone(str(tiny_backbones[name]))
    model.save_pretrained(tmp_path / "copy")
    processor.save_pretrained(tmp_path / "copy")
    model2, processor2 = load_backbone(str(tmp_path / "copy"))
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    clip = load_clip(read_annotations(synth_dir / "annotations.jsonl")[1].path, MEDIA)
    text = _conversation(processor, "No sound at all.")
    b1 = encode(processor, MEDIA, [text], [clip.frames], [clip.audio])
    b2 = encode(processor2, MEDIA, [text], [clip.frames], [clip.audio])
    assert b1.keys() == b2.keys()
    for k in b1:
        assert torch.equal(torch.as_tensor(b1[k]), torch.as_tensor(b2[k])), k
    # The real special-token names survive the round trip (a hub checkpoint would have the same ones).
    family = TINY_BACKBONES[name]
    for token in family.tokens.values():
        assert token in processor2.tokenizer.get_vocab()
    assert json.loads((tmp_path / "copy" / "config.json").read_text())["model_type"].endswith("thinker")


def test_reserved_names_build_once(tmp_path):
    path = resolve_backbone("tiny-qwen2.5-omni", cache_dir=tmp_path)
    stamp = (tmp_path / "tiny-qwen2.5-omni" / "config.json").stat().st_mtime_ns
    assert resolve_backbone("tiny-qwen2.5-omni", cache_dir=tmp_path) == path
    assert (tmp_path / "tiny-qwen2.5-omni" / "config.json").stat().st_mtime_ns == stamp


def test_unavailable_hub_id_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        resolve_backbone("Qwen/Qwen2.5-Omni-7B")


def test_batch_with_different_audio_per_row(tiny_backbones, synth_dir):
    _, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    clip = load_clip(read_annotations(synth_dir / "annotations.jsonl")[0].path, MEDIA)
    silent = np.zeros_like(clip.audio)
    text = _conversation(processor, "x")
    batch = encode(processor, MEDIA, [text, text], [clip.frames, clip.frames], [clip.audio, silent])
    assert batch["input_features"].shape[0] == 2
    assert not torch.equal(batch["input_features"][0], batch["input_features"][1])
    assert torch.equal(batch["input_ids"][0], batch["input_ids"][1])
