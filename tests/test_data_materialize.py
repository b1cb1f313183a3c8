"""``materialize`` on clips made outside the project: every file passes an independent check of its video stream
(packets byte-identical to the source) and of its audio intervention (measured, not trusted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _data_media import video_packets, write_annotations, write_clip, xcorr_lag
from data_builders.media import load_audio
from data_builders.materialize import materialize, spec_file_name
from data_builders.interventions import Intervention

SR = 16000
# The contract asks for 25 ms; an uncompensated AAC priming (1024 samples = 21-23 ms at 44.1/48 kHz) would pass that,
# so the check is tighter: the placement must be right to a few samples.
TIGHT = 0.003


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Two non-synth clips: 30 fps 320x240 with 48 kHz stereo, and 24 fps 256x144 with 44.1 kHz stereo (mpeg4)."""
    root = tmp_path_factory.mktemp("foreign")
    write_clip(root / "a.mp4", duration=5.0, fps=30, size=(320, 240), sr=48000, events=[(2.5, 440.0)], seed=1)
    write_clip(root / "b.mp4", duration=4.5, fps=24, size=(256, 144), sr=44100, events=[(1.2, 1800.0), (3.0, 900.0)],
               codec="mpeg4", seed=2)
    ann = write_annotations(root / "ann.jsonl", [
        {"id": "ext_a", "video": "a.mp4", "source": "external", "duration": 5.0, "visual_event": "a bar slides",
         "t_visual": 2.5, "audio_event": "a 440 Hz ping", "t_audio": 2.5},
        {"id": "ext_b", "video": "b.mp4", "source": "external", "duration": 4.5, "visual_event": "a bar slides",
         "t_visual": 1.2, "audio_event": "a high chirp", "t_audio": 1.2},
    ])
    out = root / "mat"
    rows = materialize(ann, out, offsets=[1.0, -0.8, 0.35], seed=0, progress=False)
    return root, out, rows


def test_index_rows_follow_the_contract(foreign):
    root, out, rows = foreign
    on_disk = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert on_disk == rows
    kinds = sorted((r["source_id"], r["intervention"]["kind"]) for r in rows)
    assert kinds.count(("ext_a", "shift")) == 3 and ("ext_a", "mute") in kinds and ("ext_b", "swap") in kinds
    for r in rows:
        assert set(r) == {"file", "source_id", "intervention"}
        iv = r["intervention"]
        assert ("offset" in iv) == (iv["kind"] == "shift") and ("donor" in iv) == (iv["kind"] == "swap")
        assert (out / r["file"]).is_file()
        assert iv["kind"] not in r["file"]  # the file name does not reveal the condition


def test_video_packets_are_copied_bit_for_bit(foreign):
    root, out, rows = foreign
    src = {"ext_a": video_packets(root / "a.mp4"), "ext_b": video_packets(root / "b.mp4")}
    assert len(src["ext_a"]) == 150 and len(src["ext_b"]) == 108
    for r in rows:
        got = video_packets(out / r["file"])
        assert [p[0] for p in got] == [p[0] for p in src[r["source_id"]]], r
        assert np.allclose([p[1] for p in got], [p[1] for p in src[r["source_id"]]], atol=1e-4), r


def test_audio_interventions_measure_as_specified(foreign):
    root, out, rows = foreign
    orig = {"ext_a": load_audio(root / "a.mp4", SR)[0], "ext_b": load_audio(root / "b.mp4", SR)[0]}
    checked = 0
    for r in rows:
        got, _ = load_audio(out / r["file"], SR)
        ref = orig[r["source_id"]]
        iv = r["intervention"]
        assert abs(got.size - ref.size) <= 0.03 * SR, r  # the clip keeps its length
        if iv["kind"] == "original":
            assert abs(xcorr_lag(ref, got, SR, 1.0)) <= TIGHT
        elif iv["kind"] == "shift":
            lag = xcorr_lag(ref, got, SR, abs(iv["offset"]) + 1.0)
            assert abs(lag - iv["offset"]) <= TIGHT, (r, lag)  # sign kept, placed to the sample
            checked += 1
        elif iv["kind"] == "mute":
            assert np.max(np.abs(got)) < 1e-4
        else:
            donor = orig[iv["donor"]]
            assert abs(xcorr_lag(donor, got, SR, 1.0)) <= 0.025
            n = min(donor.size, got.size)
            assert np.corrcoef(donor[: n - 800], got[: n - 800])[0, 1] > 0.9  # the donor's track, not the clip's
    assert checked == 6


def test_stereo_and_rate_are_kept(foreign):
    import av

    root, out, rows = foreign
    for r in rows:
        with av.open(str(out / r["file"])) as c:
            a = c.streams.audio[0]
            assert a.codec_context.name == "aac"
            assert a.codec_context.sample_rate == (48000 if r["source_id"] == "ext_a" else 44100)
            assert a.codec_context.layout.name == "stereo"


def test_file_names_are_stable_and_distinct():
    a = spec_file_name("x", Intervention(kind="shift", offset=1.0))
    assert a == spec_file_name("x", Intervention(kind="shift", offset=1.0))
    assert a != spec_file_name("x", Intervention(kind="shift", offset=-1.0))


def test_bad_clips_are_skipped_not_fatal(tmp_path):
    write_clip(tmp_path / "ok.mp4", duration=2.0, fps=25, size=(96, 64), sr=22050, channels=1)
    write_clip(tmp_path / "mute.mp4", duration=2.0, fps=25, size=(96, 64), sr=None)
    ann = write_annotations(tmp_path / "ann.jsonl", [
        {"id": "ok", "video": "ok.mp4", "duration": 2.0, "t_visual": 1.0, "t_audio": 1.0, "audio_event": "ping"},
        {"id": "noaudio", "video": "mute.mp4", "duration": 2.0, "t_visual": 1.0, "t_audio": 1.0},
        {"id": "gone", "video": "gone.mp4", "duration": 2.0, "t_visual": 1.0, "t_audio": 1.0},
    ])
    rows = materialize(ann, tmp_path / "m", offsets=[0.5, 3.0], progress=False)
    assert sorted(r["intervention"]["kind"] for r in rows) == ["mute", "original", "shift"]
    lines = (tmp_path / "m" / "skipped.jsonl").read_text().splitlines()
    skipped = {(s["id"], s["reason"]) for s in map(json.loads, lines)}
    assert skipped == {("noaudio", "no_audio_stream"), ("gone", "missing_file"), ("ok", "no_donor"),
                       ("ok", "shift_too_long")}
