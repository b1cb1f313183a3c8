"""Per-call costs of evaluation taken out without changing what is computed: predictions computed several at a time
(`Batched`), the prediction cache's fsyncs spaced out, token ids of repeated texts remembered."""

from __future__ import annotations

import json

import pytest

from eval import context
from eval.context import Batched, PredictionCache


def test_batched_computes_registered_items_together_and_hands_them_out_one_by_one():
    calls = []

    def square(batch):
        calls.append(list(batch))
        return [x * x for x in batch]

    b = Batched(square, size=3)
    for x in (1, 2, 3, 4, 5):
        b.want(f"k{x}", x)
    assert b.get("k1", 1) == 1 and calls == [[1, 2, 3]]
    assert b.get("k3", 3) == 9 and b.get("k2", 2) == 4 and calls == [[1, 2, 3]]  # kept from the first batch
    assert b.get("k5", 5) == 25 and calls[-1] == [5]  # a batch starts at the item asked for
    assert b.get("k4", 4) == 16 and calls[-1] == [4]
    assert b.get("other", 7) == 49 and calls[-1] == [7]  # never registered: computed alone
    with pytest.raises(ValueError):
        Batched(square, size=0)
    broken = Batched(lambda batch: [0], size=2)
    broken.want("a", 1)
    broken.want("b", 2)
    with pytest.raises(RuntimeError, match="1 values for 2 items"):
        broken.get("a", 1)


def test_prediction_cache_lines_are_flushed_each_and_synced_at_most_once_a_second(tmp_path, monkeypatch):
    syncs, now = [], [100.0]
    monkeypatch.setattr(context.os, "fsync", lambda fd: syncs.append(fd))
    monkeypatch.setattr(context.time, "monotonic", lambda: now[0])
    cache = PredictionCache(tmp_path / "c.jsonl")
    for k in range(5):
        cache.put(f"k{k}", k)
        # every line is on disk as soon as it is put (readable by another process, kept if this one is killed)
        assert len((tmp_path / "c.jsonl").read_text().splitlines()) == k + 1
    assert len(syncs) == 1  # the first put syncs; the next four come within the same second
    now[0] += context.SYNC_SECONDS
    cache.put("k5", 5)
    assert len(syncs) == 2
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["value"] for r in rows] == list(range(6))
    assert PredictionCache(tmp_path / "c.jsonl").peek("k5") == 5


def test_token_ids_are_remembered_per_tokenizer(tiny_backbones):
    from eval import scoring
    from train.backbones import load_backbone

    _, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    _, other = load_backbone(str(tiny_backbones["tiny-qwen3-omni"]))
    text = "Is the sound in sync with the video?"
    ids = scoring._ids(processor.tokenizer, text)
    assert ids == processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert scoring._ids(processor.tokenizer, text) is ids  # remembered
    assert scoring._ids(other.tokenizer, text) is not ids  # another tokenizer tokenises for itself
    assert scoring._ids(other.tokenizer, text) == other.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_decoded_audio_is_decoded_once_per_file_state(tmp_path, monkeypatch):
    """Every checkpoint hears the same files: a waveform is decoded once while its file is unchanged, each caller
    gets its own copy, and a rewritten file is decoded again."""
    import os

    import numpy as np
    import soundfile as sf

    from data_builders import media

    monkeypatch.setattr(context, "_DECODED", type(context._DECODED)())
    decodes = []
    real = media.load_audio
    monkeypatch.setattr(media, "load_audio", lambda *a, **k: decodes.append(a[0]) or real(*a, **k))
    wav = tmp_path / "a.wav"
    sf.write(wav, np.linspace(-0.5, 0.5, 16000, dtype=np.float32), 16000)
    first = context.decoded_audio(wav, 16000)
    assert np.array_equal(first, real(wav, 16000)[0]) and len(decodes) == 1
    first[:] = 0  # a caller changing its copy changes nobody else's
    again = context.decoded_audio(wav, 16000)
    assert len(decodes) == 1 and np.array_equal(again, real(wav, 16000)[0])
    context.decoded_audio(wav, 16000, max_seconds=0.5)  # other decoding settings: decoded for them
    assert len(decodes) == 2
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    assert context.decoded_audio(wav, 16000).size == 8000 and len(decodes) == 3
    with pytest.raises(FileNotFoundError):
        context.decoded_audio(tmp_path / "missing.wav", 16000)
