"""Hostile and careless inputs: each class of bad input has one outcome, asserted exactly.

Names never escape their folder; broken records are quarantined with their reason while the rest builds; a stale
prediction is never served; eval reads the data its run was trained on; a build is committed as one unit and
locked; non-finite numbers are refused everywhere (recipes, annotations, predictions, arguments, training); every
command line turns an expected failure into one line and exit code 2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_builders import build as build_mod
from data_builders.build import build

# ----------------------------------------------------------------------------------------------------------------
# helpers


def _run_cli(main, argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    """The single ``error:`` line of stderr (the path line printed first is allowed; a traceback is not)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _synth_rows(synth_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()]


def _clip_folder(synth_dir: Path, folder: Path) -> list[dict]:
    """Copy the synth clips under ``folder/videos`` and return their annotations (relative paths, split train)."""
    rows = _synth_rows(synth_dir)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copy(synth_dir / r["video"], folder / "videos" / Path(r["video"]).name)
        r["video"], r["split"] = f"videos/{Path(r['video']).name}", "train"
    return rows


def _recipe(folder: Path, ann: Path, body: str = "") -> Path:
    path = folder / "r.yaml"
    path.write_text(f"seed: 3\ndata:\n  annotations: [{ann}]\n  sft: {{mute: 2}}\n{body}", encoding="utf-8")
    return path


def _quarantine(out: Path) -> dict[int, dict]:
    return {r["line"]: r for r in map(json.loads, (out / "quarantine.jsonl").read_text().splitlines())}


# ----------------------------------------------------------------------------------------------------------------
# names and paths never escape


def test_a_recipe_name_cannot_leave_the_data_folder(tmp_path, capsys):
    from data_builders.__main__ import main

    victim = tmp_path / "victim"
    (victim / "sft").mkdir(parents=True)
    (victim / "sft" / "keep.txt").write_text("mine")
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    recipe = _recipe(tmp_path, tmp_path / "none.jsonl")
    code, _, err = _run_cli(main, ["build", str(recipe), "--root", str(root), "--set", "name=../../victim"], capsys)
    assert code == 2
    assert _one_error_line(err) == (
        f"error: {recipe}: name: recipe name '../../victim' is not a plain folder name: use letters, "
        "digits, '_', '.' and '-', starting with a letter or digit (no '/', '..' or spaces)")
    assert (victim / "sft" / "keep.txt").read_text() == "mine" and sorted(os.listdir(victim)) == ["sft"]
    assert not (root / "data").exists()


def test_annotation_media_stay_in_their_folder_unless_the_recipe_names_a_root(tmp_path, synth_dir):
    ann_dir = tmp_path / "ann"
    rows = _clip_folder(synth_dir, ann_dir)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(ann_dir / rows[0]["video"], outside / "x.mp4")
    rows += [{**rows[0], "id": "up", "video": "../elsewhere/x.mp4"},
             {**rows[0], "id": "abs", "video": str(outside / "x.mp4")}]
    ann = ann_dir / "a.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = build(_recipe(tmp_path, ann), out=tmp_path / "o1", progress=False)
    q = _quarantine(res.out)
    assert {line: (r["id"], r["reason"], r["field"]) for line, r in q.items()} == {
        5: ("up", "media_outside_roots", "video"), 6: ("abs", "media_outside_roots", "video")}
    assert q[5]["message"].startswith(f"{ann}:5: video '../elsewhere/x.mp4' points outside {ann_dir}")
    # Listing that folder as a media root lets both in.
    res = build(_recipe(tmp_path, ann, f"  media_roots: [{outside}]\n"), out=tmp_path / "o2", progress=False)
    assert res.manifest["clips"]["train"] == 6 and res.manifest["quarantined"]["total"] == 0


def test_the_path_rule_is_one_root_for_data_runs_and_cache(tmp_path, monkeypatch, capsys, tiny_backbones):
    from recipes.paths import ROOT_ENV, command, data_dir, runs_dir
    from train.__main__ import main as train_main
    from train.backbones import backbone_cache

    here, root = tmp_path / "here", tmp_path / "proj"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.delenv("HARKEN_CACHE", raising=False)
    assert (data_dir("demo"), runs_dir(), backbone_cache()) == (
        here / "data" / "demo", here / "runs", here / ".cache" / "backbones")
    monkeypatch.setenv(ROOT_ENV, str(root))
    assert (data_dir("demo"), runs_dir(), backbone_cache()) == (
        root / "data" / "demo", root / "runs", root / ".cache" / "backbones")
    assert command("data_builders build demo") == f"python -m data_builders build demo --root {root}"
    monkeypatch.delenv(ROOT_ENV)
    # train from another folder: the message's command reaches the same data folder from where the user stands.
    backbone = tiny_backbones["tiny-qwen2.5-omni"]
    code, _, err = _run_cli(train_main, ["demo", "--root", str(root), "--set", f"backbone={backbone}"], capsys)
    assert code == 2 and ROOT_ENV not in os.environ
    assert err.splitlines()[0] == (f"[harken] root {root} (data {root}/data, runs {root}/runs, cache "
                                   f"{root}/.cache)")
    assert _one_error_line(err) == (
        f"error: stages.sft.data: no dataset at {root}/data/demo/sft; build it with `python -m data_builders build "
        f"demo --root {root}` or point stages.sft.data.path at one")


# ----------------------------------------------------------------------------------------------------------------
# one bad record is quarantined, never fatal


def test_broken_records_are_quarantined_and_the_rest_builds(tmp_path, synth_dir):
    ann_dir = tmp_path / "ann"
    rows = _clip_folder(synth_dir, ann_dir)
    loop = ann_dir / "videos" / "loop.mp4"
    os.symlink(loop.name, loop)  # a link to itself
    base = rows[0]
    bad = [
        {**base, "id": "nul", "video": "videos/a\x00b.mp4"},
        {**base, "id": "loop", "video": "videos/loop.mp4"},
        {**base, "id": "inf", "duration": float("inf")},
        {**base, "id": "huge", "duration": 1e12},
    ]
    lines = [json.dumps(r).encode() for r in rows[:2]]
    lines.insert(1, b'{"id": "latin1", "video": "caf\xe9.mp4"}')  # one non-UTF-8 byte
    lines += [json.dumps(r).encode() for r in bad] + [json.dumps(r).encode() for r in rows[2:]]
    ann = ann_dir / "a.jsonl"
    ann.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")  # a UTF-8 BOM before the first (valid) record
    res = build(_recipe(tmp_path, ann), out=tmp_path / "o", progress=False)
    q = _quarantine(res.out)
    assert {line: (r.get("id"), r["field"], r["reason"]) for line, r in q.items()} == {
        2: ("latin1", "<encoding>", "invalid_annotation"),
        4: ("nul", "video", "nul_in_path"),
        5: ("loop", "video", "symlink_loop"),
        6: ("inf", "duration", "invalid_annotation"),
        7: ("huge", "duration", "duration_mismatch")}
    assert q[2]["message"] == f"{ann}:2: field '<encoding>': not UTF-8 text (byte 30 of the line)"
    assert q[6]["message"] == f"{ann}:6: field 'duration': Input should be a finite number"
    assert res.manifest["clips"]["train"] == 4  # every good record, the first (after the BOM) included


def test_materialize_leaves_out_an_audio_only_file_and_writes_the_rest(tmp_path, synth_dir):
    import av

    from data_builders.materialize import materialize

    ann_dir = tmp_path / "ann"
    rows = _clip_folder(synth_dir, ann_dir)[:2]
    with av.open(str(ann_dir / "videos" / "audio_only.mp4"), mode="w") as out:
        st = out.add_stream("aac", rate=16000, layout="mono")
        wave = (0.1 * np.sin(np.arange(16000 * 3) / 5)).astype(np.float32)
        for s in range(0, wave.size, 1024):
            fr = av.AudioFrame.from_ndarray(wave[None, s:s + 1024], format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, s
            out.mux(st.encode(fr))
        out.mux(st.encode(None))
    rows.insert(1, {**rows[0], "id": "audio_only", "video": "videos/audio_only.mp4"})
    ann = ann_dir / "a.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = materialize(ann, tmp_path / "m", offsets=[1.0], progress=False, verify=False)
    skipped = [json.loads(line) for line in (tmp_path / "m" / "skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"]) for s in skipped] == [("audio_only", "no_video_stream")]
    written = sorted(p.name for p in (tmp_path / "m" / "videos").iterdir())
    assert written == sorted(Path(r["file"]).name for r in index)  # no orphan: every file is in the index
    assert {r["source_id"] for r in index} == {rows[0]["id"], rows[2]["id"]}


# ----------------------------------------------------------------------------------------------------------------
# a build is one unit, and one at a time


def _sft_ids(out: Path) -> list[str]:
    from data_builders.build import load_built

    built = load_built(out)  # the recipe asks for no DPO pair: the empty dpo/ set must load too
    assert len(built.dpo) == 0
    return sorted(built.sft["id"])


def test_a_build_that_dies_before_its_manifest_leaves_the_previous_build_whole(tmp_path, synth_dir, monkeypatch):
    ann_dir = tmp_path / "ann"
    rows = _clip_folder(synth_dir, ann_dir)
    ann = ann_dir / "a.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = _recipe(tmp_path, ann)
    out = tmp_path / "o"
    first = build(recipe, out=out, progress=False)
    before = _sft_ids(out)

    real = build_mod.write_jsonl

    def dies_at_quarantine(path, rows):  # the datasets are written by now
        if Path(path).name == "quarantine.jsonl":
            raise KeyboardInterrupt("killed")
        real(path, rows)

    monkeypatch.setattr(build_mod, "write_jsonl", dies_at_quarantine)
    with pytest.raises(KeyboardInterrupt):
        build(recipe, out=out, overrides=["data.sft.mute=3"], progress=False)
    monkeypatch.setattr(build_mod, "write_jsonl", real)
    again = build(recipe, out=out, progress=False)  # the first build's inputs: truly built, nothing to do
    assert again.skipped and _sft_ids(out) == before
    # Dying in the middle of the swap: the folder no longer claims to be built, so the next run rebuilds.
    real_swap = build_mod.io.swap_folder

    def dies_at_dpo(staged, target):
        if Path(target) == out / "dpo":
            raise KeyboardInterrupt("killed")
        real_swap(staged, target)

    monkeypatch.setattr(build_mod.io, "swap_folder", dies_at_dpo)
    with pytest.raises(KeyboardInterrupt):
        build(recipe, out=out, overrides=["data.sft.mute=3"], progress=False)
    monkeypatch.setattr(build_mod.io, "swap_folder", real_swap)
    assert not (out / "manifest.json").exists()
    redo = build(recipe, out=out, progress=False)
    assert not redo.skipped and _sft_ids(out) == before and redo.manifest["build_key"] == first.manifest["build_key"]


def test_a_second_build_of_the_same_folder_is_refused(tmp_path, capsys):
    from data_builders.__main__ import main
    from data_builders.build import BuildLockedError, build_lock

    out = tmp_path / "o"
    out.mkdir()
    recipe = _recipe(tmp_path, tmp_path / "none.jsonl")
    with build_lock(out):
        code, _, err = _run_cli(main, ["build", str(recipe), "--out", str(out)], capsys)
        with pytest.raises(BuildLockedError):
            build(recipe, out=out, progress=False)
    assert code == 2
    assert _one_error_line(err) == (f"error: {out}: another build (pid {os.getpid()}) is writing this folder; wait "
                                    "for it to finish, or build into another --out")
    assert sorted(os.listdir(out)) == [".build.lock"]


# ----------------------------------------------------------------------------------------------------------------
# eval: no stale prediction, the run's own data


class _Scorer:
    def __init__(self):
        self.calls = 0

    def score(self, model, processor, media, prompt, options, frames=None, audio=None, shared=None):
        from eval.scoring import OptionScores

        self.calls += 1
        return OptionScores(tuple(-float(i) for i in range(len(options))), tuple(1 for _ in options))


def test_a_changed_clip_is_evaluated_again_not_served_from_the_cache(tmp_path, synth_dir, monkeypatch):
    from eval.context import EvalContext, PredictionCache
    from eval.runner import _done, _settings
    from eval.thud import suite as thud_suite
    from recipes.media import MediaSettings

    media = MediaSettings(fps=1, max_frames=4, max_pixels=28 * 28 * 8)
    ann_dir = tmp_path / "ann"
    rows = _clip_folder(synth_dir, ann_dir)[:2]
    for r in rows:
        r["split"] = "test"
    ann = ann_dir / "test_clips.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = {"annotations": str(ann), "modes": ["closed_set"], "conditions": ["mute"]}

    def run() -> int:
        scorer = _Scorer()
        monkeypatch.setattr(thud_suite, "score_options", scorer.score)
        ctx = EvalContext(checkpoint=tmp_path, fingerprint="fp", model=None, processor=None, media=media,
                          out_dir=tmp_path / "out", cache=PredictionCache(tmp_path / "c.jsonl"), options=opts)
        thud_suite.run(ctx)
        return scorer.calls

    first = run()
    assert first > 0 and run() == 0  # unchanged inputs: every prediction is a hit
    settings = _settings("fp", media, {"thud": opts}, 0, "fp32")
    (tmp_path / "out" / "results.json").write_text(json.dumps({"settings": settings, "suites": {}}))
    assert _done(tmp_path / "out", settings) is not None
    # The annotation now points the first clip at the other file (same id, same event times).
    rows[0]["video"] = rows[1]["video"]
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run() == first // 2  # the first clip's questions again; the second clip's stay hits
    assert _done(tmp_path / "out", _settings("fp", media, {"thud": opts}, 0, "fp32")) is None  # watch re-runs


def test_eval_reads_the_data_folder_its_run_was_trained_on(tmp_path, monkeypatch):
    from eval.runner import resolve_data, suite_plan
    from recipes.schema import Recipe

    recipe = Recipe.model_validate({"name": "r1", "eval": {"suites": {"thud": {}}}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARKEN_ROOT", raising=False)
    decoy = tmp_path / "data" / "r1"
    decoy.mkdir(parents=True)
    (decoy / "test_clips.jsonl").write_text("{}\n")
    built = tmp_path / "elsewhere" / "r1"
    built.mkdir(parents=True)
    (built / "test_clips.jsonl").write_text("{}\n")
    ck = tmp_path / "runs" / "r1" / "sft" / "checkpoint-2"
    ck.mkdir(parents=True)
    (ck.parent / "started.json").write_text(json.dumps({"compat": "x", "data": str(built)}))
    assert resolve_data(recipe, None, ck) == built
    assert suite_plan(recipe, data_dir=resolve_data(recipe, None, ck))["thud"]["annotations"] == str(
        built / "test_clips.jsonl")
    assert resolve_data(recipe, str(decoy), ck) == decoy  # an explicit --data wins
    assert resolve_data(recipe, None, tmp_path / "nowhere") == decoy  # nothing recorded: the path rule


# ----------------------------------------------------------------------------------------------------------------
# non-finite numbers


def test_non_finite_numbers_are_refused_in_recipes_and_arguments(tmp_path, capsys):
    from data_builders.__main__ import main as data_main
    from eval.__main__ import main as eval_main
    from recipes.schema import RecipeError, load_recipe

    with pytest.raises(RecipeError) as exc:
        load_recipe("demo", ["stages.sft.learning_rate=.inf"])
    assert str(exc.value).endswith("demo.yaml: stages.sft.learning_rate: inf is not a finite number")
    with pytest.raises(RecipeError, match=r"media.fps: nan is not a finite number"):
        load_recipe("demo", ["media.fps=.nan"])
    code, _, err = _run_cli(data_main, ["materialize", "--annotations", "x.jsonl", "--out", str(tmp_path / "m"),
                                        "--offsets", "nan,1"], capsys)
    assert code == 2 and _one_error_line(err) == "error: --offsets: 'nan' is not a finite number"
    assert not (tmp_path / "m").exists()
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"source_id": "a", "dimension": "temporal_sync", "condition": "original",
                                 "label": "synced"}) + "\n")
    for bands, reason in (("2,1", "--bands '2,1': band edges are seconds > 0 in increasing order, e.g. 0.5,1,2"),
                          ("-1", "--bands '-1': band edges are seconds > 0 in increasing order, e.g. 0.5,1,2"),
                          ("nan", "--bands: 'nan' is not a finite number")):
        code, out, err = _run_cli(eval_main, ["metrics", "thud", str(preds), "--bands", bands], capsys)
        assert (code, out, _one_error_line(err)) == (2, "", f"error: {reason}")
    preds.write_text(json.dumps({"source_id": "a", "dimension": "temporal_sync", "condition": "shift",
                                 "offset": float("nan"), "label": "early"}) + "\n")
    code, out, err = _run_cli(eval_main, ["metrics", "thud", str(preds)], capsys)
    assert code == 2 and out == "" and _one_error_line(err).startswith(
        f"error: {preds}:1: not a Thud prediction row (1 validation error for PredictionRow offset Input should be "
        "a finite number")


def test_training_stops_at_a_non_finite_loss_and_never_merges(tiny_backbones, synth_dir, tmp_path):
    import _train_data as td

    from recipes.schema import load_recipe
    from train.callbacks import NonFiniteTrainingError, read_log
    from train.pipeline import run_recipe

    td.save(td.sft_records(synth_dir), tmp_path / "data" / "sft")
    recipe = td.write_recipe(tmp_path, "blowup", f"""
backbone: {tiny_backbones["tiny-qwen2.5-omni"]}
media: {{fps: 1, max_frames: 4, max_pixels: 6272}}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 4, learning_rate: 1.0e+30, batch_size: 2, save_steps: 1,
         lr_scheduler: constant}}
""")
    with pytest.raises(NonFiniteTrainingError) as exc:
        run_recipe(load_recipe(recipe), runs_root=tmp_path / "runs", data_root=tmp_path / "data", log=lambda _: None)
    stage = tmp_path / "runs" / "blowup" / "sft"
    found = re.fullmatch(r"stages\.sft: (loss|grad_norm|weight \S+) is (\S+|not finite) at step (\d+); the stage "
                         r"stopped without saving or merging it\. Lower stages\.sft\.learning_rate or max_grad_norm, "
                         r"or check the data", str(exc.value))
    assert found, str(exc.value)
    step = int(found.group(3))
    assert step < 4 and all(r["step"] <= step for r in read_log(stage))
    assert not (stage / "stage.json").exists() and not (stage / "merged").exists()
    assert not (stage / f"checkpoint-{step}").exists()  # the non-finite state was never saved
    assert json.loads((stage / "started.json").read_text())["data"] == str(tmp_path / "data")


# ----------------------------------------------------------------------------------------------------------------
# every CLI: one line, exit 2


def test_bad_recipe_text_is_one_line_in_every_command(tmp_path, capsys):
    from data_builders.__main__ import main as data_main
    from eval.__main__ import main as eval_main
    from train.__main__ import main as train_main

    recipe = _recipe(tmp_path, tmp_path / "none.jsonl")
    for main in (data_main, train_main):
        argv = (["build"] if main is data_main else []) + [str(recipe), "--set", "seed=[1,"]
        code, _, err = _run_cli(main, argv, capsys)
        assert code == 2 and _one_error_line(err).startswith(
            f"error: {recipe}: seed: --set value '[1,' is not valid YAML (while parsing a flow node")
    code, _, err = _run_cli(eval_main, ["run", "--checkpoint", "x", "--suites", "thud", "--set", "thud.limit=[1,"],
                            capsys)
    assert code == 2 and _one_error_line(err).startswith("error: --set: thud.limit: --set value '[1,' is not valid")
    child = tmp_path / "child.yaml"
    child.write_text("extends: [r.yaml]\n")
    code, _, err = _run_cli(train_main, [str(child)], capsys)
    assert code == 2 and _one_error_line(err) == (
        f"error: {child}: extends: must be the base recipe's file name (a string), got ['r.yaml']")
    twice = tmp_path / "twice.yaml"
    twice.write_text("seed: 1\ndescription: x\nseed: 2\n")
    code, _, err = _run_cli(train_main, [str(twice)], capsys)
    assert code == 2 and _one_error_line(err).startswith(
        f"error: {twice}: <yaml>: not valid YAML (key 'seed' appears twice (first on line 1); keep one")


def test_unknown_suites_and_empty_run_folders_are_refused(tmp_path, capsys):
    from eval.__main__ import main as eval_main
    from eval.suites import SUITES

    code, _, err = _run_cli(eval_main, ["run", "--checkpoint", "x", "--suites", "thud,thdu"], capsys)
    assert code == 2 and _one_error_line(err) == f"error: unknown suite(s) thdu; known: {', '.join(sorted(SUITES))}"
    # in a recipe too: refused at load, before any build, training or evaluation spends time on it
    from train.__main__ import main as train_main

    bad = tmp_path / "typo.yaml"
    from recipes.schema import RECIPES_DIR

    bad.write_text(f"extends: {RECIPES_DIR / 'demo.yaml'}\neval:\n  suites:\n    thdu: {{}}\n")
    code, _, err = _run_cli(train_main, [str(bad), "--dry-run"], capsys)
    assert code == 2 and _one_error_line(err) == (f"error: {bad}: eval.suites.thdu: unknown suite (known: "
                                                      f"{', '.join(sorted(SUITES))})")
    empty = tmp_path / "runs" / "no_such_recipe"
    empty.mkdir(parents=True)
    code, out, err = _run_cli(eval_main, ["watch", str(empty), "--once"], capsys)
    assert code == 2 and out == "" and not (empty / "report.md").exists()
    assert _one_error_line(err) == (f"error: {empty}: no checkpoint to evaluate and no recipe named 'no_such_recipe' "
                                    "(train first, or pass the run folder of a recipe)")


def test_broken_checkpoint_files_are_named(tmp_path, tiny_backbones, capsys):
    from eval.__main__ import main as eval_main

    ck = tmp_path / "ck"
    shutil.copytree(tiny_backbones["tiny-qwen2.5-omni"], ck)
    weights = ck / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as fh:
        fh.truncate(size // 2)
    argv = ["run", "--checkpoint", str(ck), "--suites", "thud", "--out", str(tmp_path / "out")]
    code, _, err = _run_cli(eval_main, argv, capsys)
    assert code == 2 and _one_error_line(err).startswith(f"error: {weights}: cut short ({size // 2} bytes, its "
                                                         "header needs ")
    weights.unlink()
    (ck / "adapter_config.json").write_text('{"base_model_name_or_path": ')
    code, _, err = _run_cli(eval_main, argv, capsys)
    assert code == 2 and _one_error_line(err).startswith(f"error: {ck / 'adapter_config.json'}: not valid JSON")
    assert not (tmp_path / "out").exists()
