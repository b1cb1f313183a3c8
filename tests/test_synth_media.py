"""Synthetic clips and the media loader: streams, determinism, event timing, and the loader's three errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from data_builders.annotations import read_annotations
from data_builders.media import (
    MediaMissingError, NoAudioStreamError, TruncatedMediaError, load_audio, load_clip, load_frames,
)
from data_builders.synth import CLASS_BY_NAME, GROUND_Y, HEIGHT, VIDEO_FPS, WIDTH, synthesize
from recipes import MediaSettings

# Native resolution and frame rate: every frame, no resizing, so pixel rows map to the renderer's rows.
NATIVE = MediaSettings(fps=VIDEO_FPS, max_frames=10_000, min_pixels=28 * 28, max_pixels=HEIGHT * WIDTH * 4)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "videos").glob("*.mp4"))}


def test_streams_and_times(synth_dir):
    clips = read_annotations(synth_dir / "annotations.jsonl")
    assert len(clips) == 4
    for clip in clips:
        with av.open(str(clip.path)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.audio[0].codec_context.name == "aac"
        rec = clip.record
        assert 0 < rec.t_visual < rec.duration and 0 < rec.t_audio < rec.duration
        assert rec.t_audio == rec.t_visual


def test_deterministic_for_a_seed(synth_dir, tmp_path):
    # Rebuilt in a fresh process whose allocator fills new memory with 0xFE: an encoder that reads uninitialised
    # memory (x264's mbtree assembly did) then writes other bytes, instead of only now and then mid-suite.
    code = f"from data_builders.synth import synthesize; synthesize({str(tmp_path / 'again')!r}, clips=4, seed=1, progress=False)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MALLOC_PERTURB_": "1"})
    assert (tmp_path / "again" / "annotations.jsonl").read_text() == (synth_dir / "annotations.jsonl").read_text()
    assert _digest(tmp_path / "again") == _digest(synth_dir)
    synthesize(tmp_path / "other", clips=4, seed=2, progress=False)
    assert (tmp_path / "other" / "annotations.jsonl").read_text() != (synth_dir / "annotations.jsonl").read_text()


def test_audio_onset_at_annotated_time(synth_dir):
    for clip in read_annotations(synth_dir / "annotations.jsonl"):
        audio, _ = load_audio(clip.path, 16000)
        # Onset: first sample well above the -50 dB noise floor.
        onset = np.argmax(np.abs(audio) > 0.05) / 16000
        assert abs(onset - clip.record.t_audio) <= 0.020, (clip.record.id, onset, clip.record.t_audio)


def test_first_impact_frame_at_annotated_time(synth_dir):
    for clip in read_annotations(synth_dir / "annotations.jsonl"):
        frames, times, _ = load_frames(clip.path, NATIVE)
        assert frames.shape[1:3] == (HEIGHT, WIDTH), "native decode must keep the renderer's geometry"
        color = np.array(CLASS_BY_NAME[clip.record.object_class].color, dtype=np.float32)
        # Row two pixels above the ground is covered by the object only once it rests on the ground.
        row = frames[:, GROUND_Y - 2, :, :].astype(np.float32)
        touching = (np.linalg.norm(row - color, axis=-1) < 60).sum(axis=1) >= 3
        first = int(np.argmax(touching))
        assert touching[first] and not touching[:first].any()
        assert abs(times[first] - clip.record.t_visual) <= 1 / VIDEO_FPS, (clip.record.id, times[first])


def test_loader_follows_media_settings(synth_dir):
    clip = read_annotations(synth_dir / "annotations.jsonl")[0]
    media = MediaSettings(fps=2.0, max_frames=4, max_pixels=28 * 28 * 12, sample_rate=16000)
    decoded = load_clip(clip.path, media)
    assert decoded.frames.shape[0] == 4 and decoded.frames.dtype == np.uint8
    h, w = decoded.frames.shape[1:3]
    assert h % 28 == 0 and w % 28 == 0 and h * w <= media.max_pixels
    assert np.all(np.diff(decoded.frame_times) > 0)
    assert decoded.audio.dtype == np.float32
    assert decoded.audio.size == round(clip.record.duration * 16000)


def test_missing_file(tmp_path):
    with pytest.raises(MediaMissingError) as err:
        load_clip(tmp_path / "nope.mp4", MediaSettings())
    assert err.value.reason == "missing_file" and "nope.mp4" in str(err.value)


def test_no_audio_stream(synth_dir, tmp_path):
    src = read_annotations(synth_dir / "annotations.jsonl")[0].path
    dst = tmp_path / "silent_video.mp4"
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for pkt in inp.demux(vin):
            if pkt.dts is None:
                continue
            pkt.stream = vout
            out.mux(pkt)
    frames, _, _ = load_frames(dst, MediaSettings())
    assert frames.shape[0] >= 2
    with pytest.raises(NoAudioStreamError) as err:
        load_clip(dst, MediaSettings())
    assert err.value.reason == "no_audio_stream"


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_file(synth_dir, tmp_path, keep):
    src = read_annotations(synth_dir / "annotations.jsonl")[0].path
    data = src.read_bytes()
    dst = tmp_path / f"cut_{keep}.mp4"
    dst.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TruncatedMediaError) as err:
        load_clip(dst, MediaSettings())
    assert err.value.reason == "corrupt_or_truncated" and dst.name in str(err.value)
    assert not isinstance(err.value, (MediaMissingError, NoAudioStreamError))


def test_cli_writes_clips(tmp_path):
    from data_builders.__main__ import main

    assert main(["synth", "--out", str(tmp_path), "--clips", "2", "--seed", "3"]) == 0
    rows = [json.loads(l) for l in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all((tmp_path / r["video"]).is_file() for r in rows)
