"""``build``: broken records are quarantined (exactly those), counts are exact, the test split is disjoint, a second
run does nothing, an interrupted run resumes, answers agree with each row's spec, prompts ignore the condition."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from _data_media import write_annotations, write_clip
from data_builders import build as build_mod
from data_builders.build import build, load_built, record_from_row
from data_builders.records import PreferencePair, SFTSample

DPO = {"ctp": 9, "orig_sync": 2, "mute": 3, "swap": 3}
SFT = {"ctp": 6, "mute": 2, "swap": 2}


def _recipe(folder: Path, ann: Path, extra: str = "", roots: tuple[Path, ...] = ()) -> Path:
    path = folder / "r.yaml"
    path.write_text(
        f"# Run: python -m data_builders build {path}\nseed: 3\ndata:\n  annotations: [{ann}]\n"
        f"  media_roots: {json.dumps([str(r) for r in roots])}\n"
        "  shift: {bands: [[0.3, 0.6]]}\n"
        f"  sft: {json.dumps(SFT)}\n  dpo: {json.dumps(DPO)}\n{extra}", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, synth_dir):
    """The 4 synth clips (3 train, 1 test) plus one corrupt, one audio-less, one missing file, one record whose times
    lie after the real end of its file, and one whose times lie after its own stated duration."""
    root = tmp_path_factory.mktemp("mixed")
    good = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()]
    for g in good:
        g["video"] = str((synth_dir / g["video"]).resolve())
    corrupt = root / "corrupt.mp4"
    data = (synth_dir / good[0]["video"]).read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])
    write_clip(root / "silent.mp4", duration=3.0, sr=None)
    base = {"source": "oops", "visual_event": "x", "audio_event": "y", "split": "train"}
    bad = [
        {**base, "id": "bad_corrupt", "video": "corrupt.mp4", "duration": good[0]["duration"], "t_visual": 1.0,
         "t_audio": 1.0},
        {**base, "id": "bad_noaudio", "video": "silent.mp4", "duration": 3.0, "t_visual": 1.0, "t_audio": 1.0},
        {**base, "id": "bad_missing", "video": "nowhere.mp4", "duration": 3.0, "t_visual": 1.0, "t_audio": 1.0},
        # claims 20 s, the file lasts ~5 s: caught against the probed duration
        {**good[1], "id": "bad_late_file", "duration": 20.0, "t_visual": 15.0, "t_audio": 15.0, "split": "train"},
        # times after its own stated duration: caught by the annotation reader
        {**good[2], "id": "bad_late_ann", "t_visual": 99.0, "t_audio": 99.0, "split": "train"},
    ]
    ann = write_annotations(root / "ann.jsonl", good[:2] + bad[:3] + good[2:] + bad[3:])
    recipe = _recipe(root, ann, roots=(synth_dir,))  # the good clips live in the synth folder
    out = root / "built"
    res = build(recipe, out=out, progress=False)
    return root, recipe, out, res, ann


def _quarantine(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]


def test_quarantines_exactly_the_broken_records(mixed):
    root, recipe, out, res, ann = mixed
    assert not res.skipped
    q = {r["id"]: r for r in _quarantine(out)}
    assert {k: v["reason"] for k, v in q.items()} == {
        "bad_corrupt": "corrupt_or_truncated", "bad_noaudio": "no_audio_stream", "bad_missing": "missing_file",
        "bad_late_file": "times_outside_clip", "bad_late_ann": "times_outside_clip"}
    assert q["bad_late_file"]["field"] == "t_visual" and q["bad_late_file"]["line"] == 8
    assert q["bad_late_ann"]["line"] == 9 and q["bad_corrupt"]["line"] == 3
    assert all(r["file"] == str(ann) for r in q.values())
    m = res.manifest
    assert m["quarantined"]["total"] == 5 and m["clips"] == {**m["clips"], "train": 3, "test": 1}


def test_counts_are_exact_and_rows_are_records(mixed):
    root, recipe, out, res, ann = mixed
    b = load_built(out)
    assert res.manifest["counts"]["train"]["dpo"] == DPO and res.manifest["counts"]["train"]["sft"] == SFT
    assert len(b.dpo) == sum(DPO.values()) and len(b.sft) == sum(SFT.values())
    for row in b.dpo:
        rec = record_from_row(row)
        assert isinstance(rec, PreferencePair) and Path(rec.video).is_absolute() and Path(rec.video).is_file()
        assert not any(isinstance(v, (bytes, bytearray)) for v in row.values())  # never media bytes
    assert all(isinstance(record_from_row(r), SFTSample) for r in b.sft)
    assert len({r["id"] for r in b.dpo}) == len(b.dpo)


def test_test_split_is_disjoint_and_absolute(mixed):
    root, recipe, out, res, ann = mixed
    b = load_built(out)
    test_ids = {c.id for c in b.test_clips}
    assert test_ids == {"synth_1_00003"}
    assert all(Path(c.video).is_absolute() for c in b.test_clips)
    train_ids = {r["source_id"] for r in b.dpo} | {r["source_id"] for r in b.sft}
    donors = {r["chosen_intervention"]["donor"] for r in b.dpo if r["chosen_intervention"]["kind"] == "swap"}
    assert not (train_ids | donors) & test_ids  # a test clip's audio is never heard in training either


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d", text)]


def test_answers_agree_with_each_spec(mixed):
    from _data_media import labels

    root, recipe, out, res, ann = mixed
    rows = [record_from_row(r) for r in load_built(out).dpo]
    seen = set()
    for p in rows:
        spec, m = p.chosen_intervention, p.meta
        assert p.rejected_intervention == spec and m["condition"] == spec.kind
        want = {"original": "synced", "mute": "silent", "swap": "mismatched"}.get(spec.kind)
        if spec.kind == "shift":
            want = "delayed" if spec.offset > 0 else "early"
            nums = _numbers(p.chosen)
            assert f"{abs(spec.offset):.1f}" in [f"{x:.1f}" for x in nums], p.chosen  # the offset, exactly
            assert any(abs(x - (m["t_audio"] + spec.offset)) <= 0.051 for x in nums), p.chosen  # where the sound is
            assert labels(p.rejected) in ({"synced"}, {"early" if spec.offset > 0 else "delayed"}), p.rejected
        seen.add(want)
        assert labels(p.chosen) == {want}, p.chosen
        assert labels(p.rejected) and labels(p.rejected) != {want}, p.rejected
        if spec.kind == "swap":
            assert spec.donor != p.source_id
            assert m["donor_audio_event"] in p.chosen and m["donor_audio_event"] != m["audio_event"]
        if spec.kind == "original" and m["rejected_kind"] in ("delayed", "early"):
            assert f"{abs(m['claimed_offset']):.1f}" in p.rejected
    assert seen == {"delayed", "early", "synced", "silent", "mismatched"}


def test_prompts_do_not_depend_on_the_condition(mixed):
    root, recipe, out, res, ann = mixed
    b = load_built(out)
    by_clip: dict[str, set[str]] = {}
    conds: dict[str, set[str]] = {}
    for r in [*b.dpo, *b.sft]:
        by_clip.setdefault(r["source_id"], set()).add(r["prompt"])
        kind = (r.get("chosen_intervention") or r.get("intervention"))["kind"]
        conds.setdefault(r["source_id"], set()).add(kind)
    assert any(len(c) >= 3 for c in conds.values())  # several conditions of one clip ...
    assert all(len(p) == 1 for p in by_clip.values())  # ... asked the very same question


def test_second_run_does_nothing_and_interrupted_run_resumes(mixed, monkeypatch):
    root, recipe, out, res, ann = mixed
    calls = []
    real = build_mod.probe_clip
    monkeypatch.setattr(build_mod, "probe_clip", lambda *a, **k: calls.append(a) or real(*a, **k))
    before = (out / "dpo").stat().st_mtime_ns
    again = build(recipe, out=out, progress=False)
    assert again.skipped and (out / "dpo").stat().st_mtime_ns == before and not calls
    # An interruption after probing, before the datasets and manifest were written:
    (out / "manifest.json").unlink()
    shutil.rmtree(out / "dpo")
    resumed = build(recipe, out=out, progress=False)
    assert not resumed.skipped and not calls  # every probe came from .work/probe.jsonl
    assert resumed.manifest["build_key"] == res.manifest["build_key"]
    assert [r["id"] for r in load_built(out).dpo] == [r["id"] for r in load_built(out).dpo]
    # A changed input is rebuilt.
    with ann.open("a") as fh:
        fh.write("\n")
    assert not build(recipe, out=out, progress=False).skipped


def test_same_seed_same_rows(mixed, tmp_path):
    root, recipe, out, res, ann = mixed
    other = build(recipe, out=tmp_path / "again", progress=False)
    assert [r for r in load_built(other.out).dpo] == [r for r in load_built(out).dpo]


def test_a_source_without_input_says_what_to_do(tmp_path, synth_dir):
    from data_builders.pairs import BuildError

    ann = write_annotations(tmp_path / "one.jsonl", [
        {**json.loads((synth_dir / "annotations.jsonl").read_text().splitlines()[0]),
         "video": str((synth_dir / "videos/synth_1_00000.mp4").resolve()), "split": "train"}])
    recipe = _recipe(tmp_path, ann, roots=(synth_dir,))
    with pytest.raises(BuildError, match="swap"):
        build(recipe, out=tmp_path / "o", progress=False)


def test_demo_recipe_builds(tmp_path):
    res = build("demo", out=tmp_path / "demo", progress=False)
    m = res.manifest
    assert m["rows"]["dpo"] > 0 and m["rows"]["sft"] > 0 and m["clips"]["test"] > 0
    assert (tmp_path / "demo" / "quarantine.jsonl").is_file()


def test_cli_build_says_when_there_is_nothing_to_do(mixed, capsys):
    from data_builders.__main__ import main

    root, recipe, out, res, ann = mixed
    assert main(["build", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert main(["build", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["build", str(recipe), "--out", str(out), "--set", "data.dpo.nosuch=1"]) == 2
    assert "data.dpo.nosuch" in capsys.readouterr().err


def test_clip_too_short_for_the_shift_is_left_out_of_ctp_only(mixed, tmp_path):
    root, recipe, out, res, ann = mixed
    # synth_1_00002 (4.29 s, sound at 1.61 s) has room for neither a 2.5 s delay nor a 2.5 s advance
    res2 = build(recipe, out=tmp_path / "b", overrides=["data.shift.bands=[[2.5, 3.0]]"], progress=False)
    short = [r for r in _quarantine(tmp_path / "b") if r["reason"] == "clip_too_short_for_shift"]
    assert [(r["id"], r["source"]) for r in short] == [("synth_1_00002", "ctp")]
    rows = [record_from_row(r) for r in load_built(res2.out).dpo]
    assert "synth_1_00002" not in {p.source_id for p in rows if p.source == "ctp"}
    assert "synth_1_00002" in {p.source_id for p in rows if p.source == "mute"}
    assert all(2.5 - 1e-9 <= abs(p.chosen_intervention.offset) <= 3.0 + 1e-9
               for p in rows if p.chosen_intervention.kind == "shift")
