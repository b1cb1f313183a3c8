"""The readers and the build on the datasets' published layouts (tests/_dataset_fixtures.py): FineVideo hub shards
and the card's export, an Oops download, a LLaVA-Hound DPO JSONL with its video folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from _dataset_fixtures import (OOPS_CLIPS, OOPS_HELDOUT, write_finevideo, write_llava_hound, write_oops)
from data_builders.annotations import AnnotatedClip, AnnotationError
from data_builders.readers import FineVideoClip, iter_finevideo, iter_llava_video, iter_oops

MAX_CLIP = 8.0  # the build recipe's media.max_clip_seconds: the garden video's third scene starts after it


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    return {"fv": write_finevideo(root), "oops": write_oops(root), "llava": write_llava_hound(root), "root": root}


def _split(items):
    return ([i for i in items if not isinstance(i, AnnotationError)],
            [i for i in items if isinstance(i, AnnotationError)])


def test_finevideo_every_layout_reads_the_same_rows(downloads, tmp_path):
    fv = downloads["fv"]
    by_folder, errs = _split(list(iter_finevideo(fv.root, tmp_path / "cache")))
    by_glob, _ = _split(list(iter_finevideo(str(fv.root / "data" / "train-*.parquet"), tmp_path / "cache")))
    exported, exp_errs = _split(list(iter_finevideo(fv.exported, tmp_path / "unused")))
    assert [c.id for c in by_folder] == [c.id for c in by_glob] == ["fv_garden", "fv_cook"]
    assert [c.id for c in exported] == ["fv_sample_0", "fv_sample_1"] and not exp_errs
    assert len(errs) == 1 and errs[0].line == 2
    assert errs[0].field == "json.content_metadata.scenes[0].audioVisualCorrelation"
    garden = by_folder[0]
    assert isinstance(garden, FineVideoClip) and [s.start for s in garden.scenes] == [0.0, 6.0, 13.0]
    third = garden.scenes[2]
    assert third.audio_visual_correlation == pytest.approx(0.3) and third.mood == "Calm"
    assert (third.activities[0].description, third.activities[0].start, third.activities[0].end) == (
        "She walks to a pond", 13.5, 16.0)
    assert third.narrative[0].text == "Part 3 of the tour begins." and third.narrative[0].t == 13.0
    assert third.mood_moments[0].text == "music fades in"
    assert [(s.start, s.text) for s in garden.speech][-1] == (17.0, "Thanks for watching the tour")
    assert exported[0].scenes == garden.scenes and exported[0].speech == garden.speech


def test_finevideo_empty_folder_says_what_it_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet/.arrow shard"):
        list(iter_finevideo(tmp_path / "empty", tmp_path / "cache"))


def test_oops_download(downloads):
    ok, errs = _split(list(iter_oops(downloads["oops"], downloads["root"] / "thud_events.jsonl")))
    got = {c.record.id: c for c in ok}
    assert set(got) == {"oops_Best Fails of May 2017 (Part 1)0", "oops_Best Fails of May 2017 (Part 1)1",
                        "oops_Skate Fails 201812", "oops_Skate Fails 201813", "oops_Winter Fails 20195",
                        "oops_Kitchen Fails7", "oops_Kitchen Fails8"}
    for clip in ok:
        split, _, t, sound, _ = OOPS_CLIPS[clip.record.id.removeprefix("oops_")]
        assert clip.record.t_visual == pytest.approx(t) == clip.record.t_audio  # the official median rule
        assert clip.record.split == {"train": "train", "val": "test"}[split]
        assert clip.record.audio_event == sound
        assert clip.path.parent.name == split and clip.path.parent.parent.name == "oops_video"
    held = got[f"oops_{next(iter(OOPS_HELDOUT))}"]
    assert held.record.duration == pytest.approx(4.0, abs=0.1)  # read from the file: the held-out file has no len
    assert [(e.field, e.reason) for e in errs] == [("Trampoline Fails9.t", "no_transition")]
    everything, _ = _split(list(iter_oops(downloads["oops"], downloads["root"] / "thud_events.jsonl",
                                          filtered=False)))
    assert {c.record.id for c in everything} - set(got) == {"oops_Trampoline Fails10"}


def test_oops_event_file_with_a_broken_line(downloads, tmp_path):
    events = tmp_path / "events.jsonl"
    lines = (downloads["root"] / "thud_events.jsonl").read_text().splitlines()
    events.write_text("\n".join([lines[0], "{not json", json.dumps({"visual_event": "no id"}), *lines[1:]]) + "\n")
    ok, errs = _split(list(iter_oops(downloads["oops"], events)))
    assert [(e.line, e.field) for e in errs[:2]] == [(2, "<json>"), (3, "id")] and len(ok) == 7


def test_llava_hound_jsonl_with_its_video_folder(downloads):
    from data_builders.media import load_audio, load_frames
    from recipes.media import MediaSettings

    ll = downloads["llava"]
    ok, errs = _split(list(iter_llava_video(ll.jsonl, ll.video_folder)))
    assert [i.id for i in ok] == [*ll.good, "gone_3"] and [e.field for e in errs] == ["chosen"]
    media = MediaSettings(fps=2.0, max_frames=8)
    frames, times, duration = load_frames(ok[0].path, media)  # the JPEG frame folder, 2 frames per second
    assert frames.shape[0] == 8 and duration == 4.0 and np.allclose(times, np.arange(8) / 2)
    assert frames[0].mean() < frames[-1].mean()
    silent, _ = load_audio(ok[2].path, 16000, missing="silence")
    assert ok[2].path.name == "webvid_silent_77.mp4" and silent.size == pytest.approx(48000, abs=400)
    assert not silent.any()
    folder_audio, _ = load_audio(ok[0].path, 16000, missing="silence")
    assert folder_audio.shape == (64000,) and not folder_audio.any()


@pytest.fixture(scope="module")
def built(downloads, tmp_path_factory):
    from data_builders.build import build

    root, ll = downloads["root"], downloads["llava"]
    recipe = tmp_path_factory.mktemp("recipe") / "real.yaml"
    recipe.write_text(f"""# Run: python -m data_builders build {recipe}
media: {{max_clip_seconds: {MAX_CLIP}}}
data:
  oops: [{{root: "{downloads['oops']}", events: "{root / 'thud_events.jsonl'}"}}]
  finevideo: ["{downloads['fv'].root}"]
  llava_video: [{{file: "{ll.jsonl}", video_folder: "{ll.video_folder}"}}]
  shift: {{bands: [[0.5, 1.2]]}}
  test_fraction: 0
  sft: {{ctp: 6, mute: 2, swap: 2}}
  dpo: {{ctp: 6, swap: 3, fv_d: 4, fv_a_l: 3, fv_t: 3, fv_c: 4, llava_video: 3}}
""")
    out = tmp_path_factory.mktemp("built")
    res = build(recipe, out=out, progress=False)
    return res, out


def test_each_layout_builds_into_the_expected_rows(built, downloads):
    from data_builders.build import load_records

    res, out = built
    m = res.manifest
    assert m["counts"]["train"]["dpo"] == {"ctp": 6, "fv_a_l": 3, "fv_c": 4, "fv_d": 4, "fv_t": 3, "llava_video": 3,
                                           "swap": 3}
    assert m["counts"]["train"]["sft"] == {"ctp": 6, "mute": 2, "swap": 2}
    assert m["clips"]["train"] == 4 and m["clips"]["test"] == 2  # Oops train / official val
    assert m["clips"]["finevideo_segments_train"] == 5 and m["clips"]["llava_video"] == 3
    q = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    # Exactly the records the fixtures broke on purpose.
    assert sorted((r["reason"], r.get("id") or r["field"]) for r in q) == sorted([
        ("no_transition", "Trampoline Fails9.t"), ("missing_file", "oops_Winter Fails 20195"),
        ("invalid_annotation", "json.content_metadata.scenes[0].audioVisualCorrelation"),
        ("invalid_annotation", "no_chosen_9"), ("missing_file", "gone_3")])
    pairs = load_records(out, "dpo")
    swaps = [p for p in pairs if p.source == "swap"]
    sounds = {v[3] for v in OOPS_CLIPS.values()}
    for p in swaps:  # per-clip texts: the donor's sound is named, and differs from the clip's own
        heard = p.meta["donor_audio_event"]
        assert heard in sounds and heard != p.meta["audio_event"] and heard in p.chosen
    llava = [p for p in pairs if p.source == "llava_video"]
    assert {p.source_id for p in llava} == set(downloads["llava"].good)


def _onset(wave: np.ndarray, sr: int, near: float) -> float:
    lo, hi = int(max(near - 0.4, 0) * sr), int((near + 0.6) * sr)
    return (lo + int(np.argmax(np.abs(wave[lo:hi])))) / sr


def test_finevideo_segments_are_their_own_files(built, downloads):
    """Scenes past the clip length are cut into files (packet copies) whose frames and sound are the source's at
    the cut's offset, and temporal-localisation answers state times where the speech is heard in that file."""
    from data_builders.build import load_records
    from _data_media import video_packets
    from data_builders.media import load_audio, load_frames
    from recipes.media import MediaSettings

    _, out = built
    fv = downloads["fv"]
    pairs = [p for p in load_records(out, "dpo") if p.source.startswith("fv_")]
    assert {p.source for p in pairs} == {"fv_d", "fv_a_l", "fv_t", "fv_c"}
    late = [p for p in pairs if p.meta["scene_start"] == 13.0]
    assert late, "the scene starting after the clip length must be used"
    media = MediaSettings(fps=2.0, max_frames=32, max_clip_seconds=MAX_CLIP)
    for p in pairs:
        assert Path(p.video).parent == out / "media" / "finevideo" / "segments" and p.start == 0 and p.end is None
    p = late[0]
    offset = p.meta["offset"]
    assert 11.0 <= offset <= 13.0  # starts on the key frame before the scene (one every 2 s or sooner)
    cut_frames, cut_t, cut_len = load_frames(p.video, media)
    src_frames, src_t, _ = load_frames(fv.sources["garden"], media, start=offset, end=offset + cut_len)
    n = min(len(cut_t), len(src_t))
    assert n >= 2 * (MAX_CLIP - 1) and np.allclose(src_t[:n] - offset, cut_t[:n])
    for a, b in zip(cut_frames[:n], src_frames[:n]):  # the cut's frame at t is the source's at t + offset
        assert np.array_equal(a, b)
    src_packets = {pkt for pkt, _, _ in video_packets(fv.sources["garden"])}
    assert all(pkt in src_packets for pkt, _, _ in video_packets(p.video))  # copied, never re-encoded
    for t in [q for q in pairs if q.source == "fv_t"]:
        stated = float(re.search(r"(\d+\.\d)", t.chosen).group(1))
        wave, _ = load_audio(t.video, 16000)
        assert _onset(wave, 16000, stated) == pytest.approx(stated, abs=0.15)
        assert stated == pytest.approx(t.meta["t_start"], abs=0.05)


def test_export_audio_matches_the_exported_video(built, tmp_path):
    from data_builders.export import export_llamafactory, read_export
    from data_builders.media import load_audio

    _, out = built
    export_llamafactory(out, tmp_path / "lf", progress=False)
    import soundfile as sf

    rows = [r for r in read_export(tmp_path / "lf", "dpo") if "/segments/" in r.video]
    assert rows
    for r in rows[:3]:
        wav, sr = sf.read(r.audio, dtype="float32")
        track, _ = load_audio(r.video, sr)
        assert wav.shape == track.shape and np.allclose(wav, track, atol=1e-6)


def test_inspect_reports_each_download(downloads, capsys):
    from data_builders.__main__ import main

    root, ll = downloads["root"], downloads["llava"]
    assert main(["inspect", str(downloads["fv"].root), str(downloads["oops"]), str(ll.jsonl), "--events",
                 str(root / "thud_events.jsonl"), "--video-folder", str(ll.video_folder), "--json"]) == 0
    fv, oops, llava = json.loads(capsys.readouterr().out)
    assert (fv["kind"], fv["readable"], fv["extra"]["scenes"]) == ("finevideo", 2, 5)
    assert fv["quarantined"] == {"invalid_annotation": 1} and "audioVisualCorrelation" in fv["examples"][
        "invalid_annotation"][0]
    assert fv["eligible"] == {"fv_d": 5, "fv_a_l": 5, "fv_t": 3, "fv_c": 8}
    assert (oops["readable"], oops["splits"]) == (6, {"test": 2, "train": 4})
    assert oops["extra"] == {"annotated but outside the official split lists": 1}  # not in train_filtered.txt
    assert oops["quarantined"] == {"missing_file": 1, "no_transition": 1}
    assert oops["eligible"] == {"ctp": 4, "orig_sync": 4, "mute": 4, "swap": 4}
    assert llava["readable"] == 3 and llava["quarantined"] == {"invalid_annotation": 1, "missing_file": 1}
    assert llava["extra"]["videos"] == "frame folders 1, frames 8, mp4 with sound 1, mp4 without sound 1"
    assert main(["inspect", str(ll.jsonl), "--video-folder", str(ll.video_folder)]) == 0
    assert "would be quarantined: 2" in capsys.readouterr().out


def test_silent_and_segment_rows_reach_the_thinker(built, tiny_backbones):
    """A DPO batch of LLaVA rows (frame folder, silent mp4, mp4 with sound) and a late FineVideo scene encodes for
    the tiny thinker; rows without a track are heard as silence, an mp4 with one keeps its sound."""
    from datasets import load_from_disk

    from recipes.media import MediaSettings
    from train.backbones import load_backbone
    from train.collators import ClipCache, DPOCollator

    _, out = built
    rows = list(load_from_disk(str(out / "dpo")))
    llava = [r for r in rows if r["source"] == "llava_video"]
    late = [r for r in rows if r["source"] == "fv_d" and r["meta"]["scene_start"] == 13.0][:1]
    media = MediaSettings(fps=1.0, max_frames=4, max_pixels=6272, max_clip_seconds=MAX_CLIP)
    _, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    batch = DPOCollator(processor, media)([*llava, *late])
    assert batch["input_ids"].shape[0] == 2 * (len(llava) + len(late))
    cache = ClipCache(media)
    from data_builders.interventions import ORIGINAL

    heard = {Path(r["video"]).name: cache.audio(r["video"], ORIGINAL).any() for r in llava}
    assert heard == {"v_7bUu05RIksU-Scene-006": False, "webvid_silent_77.mp4": False, "ego4d_clip_012.mp4": True}
    assert cache.audio(late[0]["video"], ORIGINAL).any()
