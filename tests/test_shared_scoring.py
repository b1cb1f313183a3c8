"""Shared-prefix closed-set scoring on the tiny thinkers and vision-language models: option log-likelihoods equal
scoring every option as a full sequence, and the processor and encoders run once per clip and condition.

Tolerance: 1e-4 absolute on each option's summed log-probability (float32). The shared path computes the same
function, but the prompt's attention and matmuls run with other shapes (one row instead of one per option, the
options' keys split between a cache and a new block), so sums are reduced in another order: the differences seen
are 1e-6 to 2e-5 over sums of 2-18 tokens of magnitude ~5-10 each, while a wrong position, mask or token shows as
differences of 1e-2 and more.
"""

from __future__ import annotations

import numpy as np
import pytest

from data_builders.interventions import Intervention, apply_intervention
from data_builders.media import load_clip
from eval import scoring
from eval.scoring import SharedMedia, score_options, score_unshared
from recipes.media import MediaSettings

TOL = 1e-4
MEDIA = dict(fps=1, max_frames=4, max_pixels=28 * 28 * 8)
# Options of different token lengths (2 to 18 tokens with the tiny tokenizer, end of turn included), as the
# suites' options are.
OPTIONS = ["Yes.", "No, the sound is not in sync with what happens.", "Delayed", "I cannot tell", "B"]
QUESTIONS = ["Is the sound in sync with the video?", "Is anything heard at all?", "Does it sound like the scene?"]


def _close(a, b) -> None:
    assert a.n_tokens == b.n_tokens
    assert np.max(np.abs(np.array(a.logprob) - np.array(b.logprob))) < TOL, (a.logprob, b.logprob)


class Counts:
    """Calls of the real processor step (``encode``) and forward calls of the audio and vision towers."""

    def __init__(self, model, monkeypatch):
        self.n = {"encode": 0, "audio": 0, "vision": 0}
        inner = model.model
        for name, tower in (("audio", inner.audio_tower), ("vision", inner.visual)):
            tower.register_forward_hook(lambda *_, name=name: self._count(name))
        real = scoring.encode

        def encode(*args, **kwargs):
            self._count("encode")
            return real(*args, **kwargs)

        monkeypatch.setattr(scoring, "encode", encode)

    def _count(self, name: str) -> None:
        self.n[name] += 1


@pytest.fixture(scope="module")
def clip(synth_dir):
    import json

    row = json.loads((synth_dir / "annotations.jsonl").read_text().splitlines()[0])
    return synth_dir / row["video"]


@pytest.mark.parametrize("family", ["tiny-qwen2.5-omni", "tiny-qwen3-omni"])
@pytest.mark.parametrize("audio_in_video", [True, False])
def test_shared_prefix_scores_equal_full_sequences(tiny_backbones, clip, family, audio_in_video, monkeypatch):
    from train.backbones import load_backbone

    model, processor = load_backbone(str(tiny_backbones[family]))
    model.eval()
    media = MediaSettings(**MEDIA, audio_in_video=audio_in_video)
    decoded = load_clip(clip, media)
    mute = apply_intervention(decoded.audio, Intervention(kind="mute"), decoded.sample_rate)
    expected = {(cond, q): score_unshared(model, processor, media, q, OPTIONS, frames=decoded.frames, audio=audio)
                for cond, audio in (("original", decoded.audio), ("mute", mute)) for q in QUESTIONS}
    counts = Counts(model, monkeypatch)
    shared = SharedMedia()
    for cond, audio in (("original", decoded.audio), ("mute", mute)):
        for q in QUESTIONS:
            # A fresh array per question, as a suite intervenes again per question: shared by content, not identity.
            got = score_options(model, processor, media, q, OPTIONS, frames=decoded.frames.copy(), audio=audio.copy(),
                                shared=shared)
            _close(got, expected[(cond, q)])
    # Two clip+condition pairs, three questions each: the processor and each encoder ran once per pair.
    assert counts.n == {"encode": 2, "audio": 2, "vision": 2}
    # Without a SharedMedia each call still scores all options from one encoding of the media (one prefix pass).
    _close(score_options(model, processor, media, QUESTIONS[0], OPTIONS, frames=decoded.frames, audio=decoded.audio),
           expected[("original", QUESTIONS[0])])
    assert counts.n == {"encode": 3, "audio": 3, "vision": 3}


def test_audio_only_and_text_only_prompts(tiny_backbones):
    from train.backbones import load_backbone

    model, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    model.eval()
    media = MediaSettings(**MEDIA)
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 2 * media.sample_rate).astype(np.float32)
    shared = SharedMedia()
    for audio in (wave, None):
        for q in QUESTIONS[:2]:
            _close(score_options(model, processor, media, q, OPTIONS, audio=audio, shared=shared),
                   score_unshared(model, processor, media, q, OPTIONS, audio=audio))


@pytest.mark.parametrize("family", ["tiny-qwen2.5-vl", "tiny-llava-next", "tiny-internvl3"])
def test_vision_language_models_share_the_image_prefix(tmp_path, family):
    from PIL import Image

    from train.backbones import load_backbone
    from train.vlm import build_tiny_vlm

    model, processor = load_backbone(str(build_tiny_vlm(family, tmp_path / family)))
    model.eval()
    media = MediaSettings()
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (336, 448, 3), dtype=np.uint8))
    shared = SharedMedia()
    for q in ("Which word is shown? A, B, C, D, E", "Which word does the spectrogram show?"):
        _close(score_options(model, processor, media, q, OPTIONS, image=image, shared=shared),
               score_unshared(model, processor, media, q, OPTIONS, image=image))


def test_media_digest_tells_contents_apart():
    a = np.zeros(16000, np.float32)
    b = a.copy()
    b[100] = 1e-3
    assert scoring.media_digest(a, None) == scoring.media_digest(a.copy(), None)
    assert scoring.media_digest(a, None) != scoring.media_digest(b, None)
    assert scoring.media_digest(a, None) != scoring.media_digest(None, a)
    assert scoring.media_digest(a.reshape(2, -1)) != scoring.media_digest(a)


def test_a_second_checkpoint_with_the_same_processor_reuses_the_encoded_prefixes(tiny_backbones, clip, monkeypatch):
    """`eval watch` scores every checkpoint on the same clips: the processor's output is kept by processor content,
    text and media, so a second checkpoint (its own model and processor objects, same configuration) encodes
    nothing and scores as if it had; another processor configuration encodes anew."""
    from train.backbones import load_backbone

    monkeypatch.setattr(scoring, "_ENCODED", type(scoring._ENCODED)())
    media = MediaSettings(**MEDIA)
    decoded = load_clip(clip, media)
    first, first_proc = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    second, second_proc = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    other, other_proc = load_backbone(str(tiny_backbones["tiny-qwen3-omni"]))
    assert scoring.processor_identity(first_proc) == scoring.processor_identity(second_proc)
    assert scoring.processor_identity(first_proc) != scoring.processor_identity(other_proc)
    calls = []
    real = scoring.encode
    monkeypatch.setattr(scoring, "encode", lambda *a, **k: calls.append(1) or real(*a, **k))
    for model, proc, encodes in ((first, first_proc, 1), (second, second_proc, 0), (other, other_proc, 1)):
        model.eval()
        before = len(calls)
        got = score_options(model, proc, media, QUESTIONS[0], OPTIONS, frames=decoded.frames, audio=decoded.audio,
                            shared=SharedMedia())
        assert len(calls) - before == encodes
        _close(got, score_unshared(model, proc, media, QUESTIONS[0], OPTIONS, frames=decoded.frames,
                                   audio=decoded.audio))
    monkeypatch.setattr(scoring, "ENCODED_MAX_BYTES", 0)  # nothing kept: every prefix encoded again
    before = len(calls)
    score_options(first, first_proc, media, QUESTIONS[1], OPTIONS, frames=decoded.frames, audio=decoded.audio)
    score_options(first, first_proc, media, QUESTIONS[1], OPTIONS, frames=decoded.frames, audio=decoded.audio)
    assert len(calls) - before == 2 and not scoring._ENCODED
