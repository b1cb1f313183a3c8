"""Batched greedy generation on the tiny thinkers (both rotary schemes): answers generated together, left-padded to
the longest prompt, are the answers each clip gets alone; audio-only clips of different lengths too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_builders.media import load_clip
from recipes.media import MediaSettings
from train.inputs import chat_messages, encode, generate_texts

MEDIA = dict(fps=1, max_frames=4, max_pixels=28 * 28 * 8)
# Prompts of different lengths, so rows are padded by the text as well as by their clips.
PROMPTS = ["Is the sound in sync with the video?", "Describe what you hear.",
           "Does the sound come early, late or on time, and by how many seconds?", "What happens?"]


def _lengths(processor, media, videos, audios) -> list[int]:
    texts = [processor.apply_chat_template(chat_messages(p, video=videos is not None,
                                                         audio=videos is None or not media.audio_in_video),
                                           tokenize=False, add_generation_prompt=True) for p in PROMPTS]
    batch = encode(processor, media, texts, videos=videos, audios=audios, padding_side="left")
    return batch["attention_mask"].sum(dim=1).tolist()


@pytest.mark.parametrize("family", ["tiny-qwen2.5-omni", "tiny-qwen3-omni"])
@pytest.mark.parametrize("audio_in_video", [True, False])
def test_batched_answers_equal_one_at_a_time(tiny_backbones, synth_dir, family, audio_in_video):
    from train.backbones import load_backbone

    model, processor = load_backbone(str(tiny_backbones[family]))
    model.eval()
    media = MediaSettings(**MEDIA, audio_in_video=audio_in_video)
    rows = [json.loads(x) for x in (synth_dir / "annotations.jsonl").read_text().splitlines()]
    clips = [load_clip(synth_dir / r["video"], media) for r in rows]
    videos, audios = [c.frames for c in clips], [c.audio for c in clips]
    assert len(set(_lengths(processor, media, videos, audios))) == len(PROMPTS)  # every row padded differently
    alone = [generate_texts(model, processor, media, [p], [v], [a], max_new_tokens=12)[0]
             for p, v, a in zip(PROMPTS, videos, audios)]
    together = generate_texts(model, processor, media, PROMPTS, videos, audios, max_new_tokens=12)
    assert together == alone
    assert len(set(alone)) > 1  # the clips and prompts lead to different answers: a mixed-up row would show


def test_batched_audio_only_answers_equal_one_at_a_time(tiny_backbones):
    from train.backbones import load_backbone

    model, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    model.eval()
    media = MediaSettings(**MEDIA)
    rng = np.random.default_rng(0)
    audios = [rng.uniform(-0.5, 0.5, int(s * media.sample_rate)).astype(np.float32) for s in (0.5, 2.0, 1.2, 3.1)]
    assert len(set(_lengths(processor, media, None, audios))) == len(PROMPTS)
    alone = [generate_texts(model, processor, media, [p], audios=[a], max_new_tokens=12)[0]
             for p, a in zip(PROMPTS, audios)]
    assert generate_texts(model, processor, media, PROMPTS, audios=audios, max_new_tokens=12) == alone
    assert len(set(alone)) > 1
