"""Readers (Oops transition_times, FineVideo shards and folders, llava_video JSONL) and the sources built from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from _data_media import write_annotations, write_clip
from data_builders.annotations import AnnotatedClip, AnnotationError
from data_builders.readers import (FineVideoClip, iter_finevideo, iter_llava_video, iter_transition_times,
                                   parse_timestamp)


def test_transition_times_median_and_errors(tmp_path):
    tt = tmp_path / "transition_times.json"
    tt.write_text(json.dumps({
        "fail_a": {"t": [1.0, 1.4, -1, 1.2], "n_notfound": 1, "rel_t": [0.2, 0.3, -1, 0.25], "len": 4.0},
        "fail_b": {"t": [-1, -1], "n_notfound": 2, "rel_t": [-1, -1], "len": 3.0},
        "fail_c": {"t": [5.0], "n_notfound": 0, "rel_t": [1.2], "len": 3.0},
        "fail_d": {"t": "x", "len": 3.0},
    }))
    items = list(iter_transition_times(tt, tmp_path / "vids", audio_event="a crash"))
    ok = [i for i in items if isinstance(i, AnnotatedClip)]
    errs = {e.field: e for e in items if isinstance(e, AnnotationError)}
    assert len(ok) == 1 and ok[0].record.t_visual == pytest.approx(1.2) == ok[0].record.t_audio  # median of valid
    assert ok[0].record.id == "oops_fail_a" and ok[0].path == tmp_path / "vids" / "fail_a.mp4"
    assert ok[0].record.audio_event == "a crash" and ok[0].line == 1
    assert set(errs) == {"fail_b.t", "fail_c.<record>", "fail_d.t"}
    assert errs["fail_b.t"].line == 2 and str(tt) in str(errs["fail_b.t"])


def test_parse_timestamp():
    assert parse_timestamp("00:01:02.500") == pytest.approx(62.5)
    assert parse_timestamp("01:02.5") == pytest.approx(62.5)
    with pytest.raises(ValueError):
        parse_timestamp("1:2:3:4")
    with pytest.raises(ValueError):
        parse_timestamp("soon")


def _fv_json(name: str, speech: list[tuple[str, str, str]], scenes: list[tuple[str, str, list[str]]]) -> dict:
    return {
        "original_video_filename": f"{name}.mp4",
        "content_metadata": {"scenes": [
            {"timestamps": {"start_timestamp": s, "end_timestamp": e},
             "activities": [{"description": a, "timestamp": {"start_timestamp": s, "end_timestamp": e}}
                            for a in acts],
             "audioVisualCorrelation": 0.9, "mood": {"description": "Calm", "keyMoments": []},
             "narrativeProgression": [{"description": "The talk goes on.", "timestamp": s}]}
            for s, e, acts in scenes]},
        "timecoded_text_to_speech": [{"start": a, "end": b, "text": t} for a, b, t in speech],
    }


@pytest.fixture(scope="module")
def finevideo(tmp_path_factory):
    """A parquet shard with three rows: two good videos, one with a bad timestamp; and a folder copy of one video."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("fv")
    v1 = write_clip(root / "src" / "talk.mp4", duration=6.0, fps=25, size=(192, 112), sr=44100, events=[(1.0, 300.0)])
    v2 = write_clip(root / "src" / "cook.mp4", duration=5.0, fps=24, size=(160, 96), sr=16000, channels=1,
                    events=[(2.0, 600.0)])
    j1 = _fv_json("talk", [("00:00:00.500", "00:00:02.000", "Welcome to the garden tour"),
                           ("00:00:03.500", "00:00:05.000", "These roses bloom in June")],
                  [("00:00:00.000", "00:00:03.000", ["A woman waves at the camera"]),
                   ("00:00:03.000", "00:00:06.000", ["She points at a rose bush"])])
    j2 = _fv_json("cook", [("00:00:01.000", "00:00:03.000", "Now we add the garlic")],
                  [("00:00:00.000", "00:00:04.000", ["A man chops garlic"]),
                   ("00:00:04.000", "00:00:09.000", ["He stirs a pan"])])  # 2nd scene runs past the 5 s file
    j3 = _fv_json("broken", [], [("00:00:xx", "00:00:03.000", ["?"])])
    table = pa.table({"mp4": [v1.read_bytes(), v2.read_bytes(), v1.read_bytes()],
                      "json": [json.dumps(j1), json.dumps(j2), json.dumps(j3)]})
    shard = root / "shard-00000.parquet"
    pq.write_table(table, shard)
    folder = root / "folder"
    folder.mkdir()
    (folder / "talk.mp4").write_bytes(v1.read_bytes())
    (folder / "talk.json").write_text(json.dumps(j1))
    return root, shard, folder


def test_finevideo_shard_rows_become_cached_files(finevideo, tmp_path):
    root, shard, folder = finevideo
    items = list(iter_finevideo(shard, tmp_path / "cache"))
    ok = [i for i in items if isinstance(i, FineVideoClip)]
    errs = [i for i in items if isinstance(i, AnnotationError)]
    assert [c.id for c in ok] == ["fv_talk", "fv_cook"]
    assert Path(ok[0].video).read_bytes() == (root / "src" / "talk.mp4").read_bytes()
    assert ok[0].scenes[1].start == pytest.approx(3.0) and ok[0].speech[1].text == "These roses bloom in June"
    assert ok[0].scenes[0].activities[0].description == "A woman waves at the camera"
    assert len(errs) == 1 and errs[0].line == 2
    assert errs[0].field == "json.content_metadata.scenes[0].timestamps.start_timestamp"
    mtime = Path(ok[0].video).stat().st_mtime_ns
    list(iter_finevideo(shard, tmp_path / "cache"))
    assert Path(ok[0].video).stat().st_mtime_ns == mtime  # written once


def test_finevideo_folder(finevideo):
    root, shard, folder = finevideo
    (clip,) = list(iter_finevideo(folder, folder / "unused"))
    assert clip.id == "fv_talk" and clip.video == str((folder / "talk.mp4").resolve()) and len(clip.scenes) == 2


def test_llava_reader_names_the_field(tmp_path):
    f = tmp_path / "prefs.jsonl"
    f.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "video": "v.mp4"}) + "\n"
                 + json.dumps({"prompt": "p", "rejected": "r", "video": "v.mp4"}) + "\n")
    a, b = list(iter_llava_video(f))
    assert a.path == (tmp_path / "v.mp4").resolve() and a.id == "llava_prefs_000001"
    assert isinstance(b, AnnotationError) and b.field == "chosen" and b.line == 2


def test_finevideo_and_llava_sources_build(finevideo, tmp_path):
    from data_builders.build import build, load_built, record_from_row

    root, shard, folder = finevideo
    write_clip(tmp_path / "ext.mp4", duration=3.0, fps=25, size=(160, 96), sr=16000, channels=1)
    llava = tmp_path / "llava.jsonl"
    llava.write_text(json.dumps({"prompt": "What happens?", "chosen": "A bar slides right.", "rejected": "A cat.",
                                 "video": "ext.mp4"}) + "\n"
                     + json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B", "video": "gone.mp4"}) + "\n")
    recipe = tmp_path / "fv.yaml"
    recipe.write_text(f"# Run: python -m data_builders build {recipe}\ndata:\n  finevideo: [{shard}]\n"
                      f"  llava_video: [{llava}]\n  test_fraction: 0\n"
                      "  sft: {fv_d: 2, fv_a_l: 2}\n  dpo: {fv_d: 5, fv_a_l: 4, llava_video: 2}\n")
    res = build(recipe, out=tmp_path / "out", progress=False)
    q = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert sorted((r["reason"], r.get("id")) for r in q) == [
        ("invalid_annotation", None), ("missing_file", "llava_llava_000002"), ("times_outside_clip", "fv_cook")]
    b = load_built(res.out)
    pairs = [record_from_row(r) for r in b.dpo]
    assert res.manifest["counts"]["train"]["dpo"] == {"fv_a_l": 4, "fv_d": 5, "llava_video": 2}
    for p in pairs:
        assert Path(p.video).is_file()
        if p.source == "llava_video":
            assert p.prompt == "What happens?" and p.chosen == "A bar slides right."
            continue
        assert p.start == 0 and p.end is None  # each scene is a file of its own
        assert str(tmp_path / "out" / "media" / "finevideo" / "segments") in p.video
        assert not (p.source_id == "fv_cook" and p.meta["scene_start"] >= 4.0)  # the quarantined scene is never used
        if p.source == "fv_a_l":
            options = re.findall(r"\(([A-D])\) \"", p.prompt)
            assert options == ["A", "B", "C", "D"][: len(options)] and len(options) >= 2
            letter = lambda t: re.search(r"\(([A-D])\)", t).group(1)  # noqa: E731
            assert letter(p.chosen) == "ABCD"[p.meta["answer_index"]] != letter(p.rejected)
            said = re.search(r"saying \"(.+?)\"", p.chosen).group(1)
            assert f"({letter(p.chosen)}) \"{said}\"" in p.prompt  # the chosen option is what is said in the scene
        else:
            assert p.chosen != p.rejected and p.chosen.split(" ")[0] == p.rejected.split(" ")[0]


def test_segment_decoding_matches_the_whole_clip(tmp_path):
    """FineVideo segments: frames sampled after a seek equal those of a full decode at the same times, and the
    segment's (intervened) audio is the matching slice of the whole track."""
    import numpy as np

    from data_builders.interventions import Intervention, intervened_audio
    from data_builders.media import load_frames
    from recipes.media import MediaSettings

    clip = write_clip(tmp_path / "long.mp4", duration=6.0, fps=25, size=(160, 96), sr=16000, channels=1,
                      events=[(4.0, 500.0)])
    media = MediaSettings(fps=2.0, max_frames=32)
    full, full_t, _ = load_frames(clip, media)
    seg, seg_t, _ = load_frames(clip, media, start=3.0, end=5.0)
    assert np.allclose(seg_t, [3.0, 3.5, 4.0, 4.5])
    for frame, t in zip(seg, seg_t):
        assert np.array_equal(frame, full[int(np.argmin(np.abs(full_t - t)))])
    spec = Intervention(kind="shift", offset=0.5)
    whole = intervened_audio(clip, spec, 16000)
    part = intervened_audio(clip, spec, 16000, start=3.0, end=5.0)
    assert np.array_equal(part, whole[48000:80000])
