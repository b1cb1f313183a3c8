"""The ``lmms_eval`` suite end to end, offline: a Video-MME-shaped lmms-eval task over local synthetic clips (its
YAML, a local JSON dataset and the clips in one folder), answered by a tiny Qwen2.5-Omni thinker through Harken's
wrapper and scored by lmms-eval's own Video-MME answer extraction and aggregation, through ``eval run`` and
``eval watch``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_eval_run import MEDIA, _adapter_checkpoint

from eval.__main__ import main as eval_main
from recipes.schema import Recipe

FIXTURE = Path(__file__).parent / "fixtures" / "lmms_eval_task"
TASK = "harken_tiny_videomme"
OPTIONS = ["A. A ball.", "B. A box.", "C. A bottle.", "D. A can."]


@pytest.fixture(scope="module")
def task_dir(synth_dir, tmp_path_factory):
    """The fixture task's YAML and doc_to_visual, three synthetic clips, and their Video-MME records."""
    folder = tmp_path_factory.mktemp("lmms") / "tasks"
    shutil.copytree(FIXTURE, folder)
    (folder / "videos").mkdir()
    anns = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()][:3]
    docs = []
    for i, a in enumerate(anns):
        shutil.copy(synth_dir / a["video"], folder / "videos" / f"{a['id']}.mp4")
        # Video-MME's published record layout (lmms-eval/Video-MME, test split).
        docs.append({"video_id": f"{i:03d}", "duration": "short", "domain": "Life Record",
                     "sub_category": "Daily Life", "url": "", "videoID": a["id"], "question_id": f"{i:03d}-1",
                     "task_type": "Object Recognition", "question": "What falls to the ground in the video?",
                     "options": OPTIONS, "answer": "ABCD"[["ball", "box", "bottle", "can"].index(a["object_class"])]})
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return folder


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    # lmms-eval builds the local JSON dataset into a datasets cache; keep it out of the user's home.
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))


def _lmms_files(out: Path) -> tuple[dict, list[dict]]:
    folder = out / "lmms_eval" / "harken"
    results = json.loads(sorted(folder.glob("*_results.json"))[-1].read_text())
    samples = [json.loads(line) for line in sorted(folder.glob(f"*_samples_{TASK}.jsonl"))[-1].read_text().splitlines()]
    return results, samples


@pytest.mark.slow  # ~25 s on 2 cores: importing lmms-eval and indexing its task folders is most of it
def test_eval_run_scores_a_local_lmms_eval_task(tmp_path, tiny_backbones, task_dir):
    base = tiny_backbones["tiny-qwen2.5-omni"]
    recipe = Recipe.model_validate({"name": "lmms_e2e", "backbone": str(base), "media": MEDIA})
    ck = _adapter_checkpoint(base, tmp_path / "dpo" / "checkpoint-2", recipe)
    out = tmp_path / "out"
    argv = ["run", "--checkpoint", str(ck), "--suites", "lmms_eval", "--out", str(out),
            "--set", f"lmms_eval.tasks=[{TASK}]", "--set", f"lmms_eval.include_path={task_dir}",
            "--set", "lmms_eval.max_new_tokens=4"]
    assert eval_main([*argv[:-6], "--set", "lmms_eval.taks=[x]"]) == 2  # a typo in an option stops before work
    assert eval_main(argv) == 0
    suite = json.loads((out / "results.json").read_text())["suites"]["lmms_eval"]
    assert suite["status"] == "ok" and suite["cache"] == {"hits": 0, "misses": 3}
    task = suite["tasks"][TASK]
    assert task["n"] == 3 and [s["doc_id"] for s in task["samples"]] == [0, 1, 2]
    # lmms-eval's own output: a Video-MME score for every document, from the answer Harken gave.
    results, samples = _lmms_files(out)
    assert sorted(s["doc_id"] for s in samples) == [0, 1, 2]
    scores = []
    for s, ours in zip(sorted(samples, key=lambda s: s["doc_id"]), task["samples"]):
        row = s["videomme_perception_score"]
        assert row["score"] in (0.0, 1.0) and row["score"] == float(row["pred_answer"] == row["answer"])
        assert s["filtered_resps"] == ours["answer"] and ours["videomme_perception_score"] == row
        assert s["input"].startswith("Select the best answer") and OPTIONS[3] in s["input"]  # Video-MME's prompt
        scores.append(row["score"])
    value = results["results"][TASK]["videomme_perception_score,none"]
    assert value == pytest.approx(100 * sum(scores) / 3)
    assert suite["metrics"] == {f"{TASK}/videomme_perception_score": value}
    report = (out / "report.md").read_text()
    assert "## lmms_eval" in report and f"| {TASK} | videomme_perception_score | {value:.4g} | 3 |" in report
    # Every answer is cached: a repeated run makes no model call and lmms-eval scores the same answers the same.
    assert eval_main(argv) == 0
    again = json.loads((out / "results.json").read_text())["suites"]["lmms_eval"]
    assert again["cache"] == {"hits": 3, "misses": 0} and again["metrics"] == suite["metrics"]
    # `eval compare` gets a column for the task: percent correct with its interval, paired by document.
    from eval.compare import row_cells

    cell = row_cells(out / "results.json", "closed_set")[TASK]
    assert cell.n == 3 and cell.value == pytest.approx(value) and set(cell.outcomes) == {"0", "1", "2"}


@pytest.mark.slow  # ~18 s on 2 cores, as above, for two checkpoints
def test_watch_runs_the_suite_from_the_recipe(tmp_path, tiny_backbones, task_dir):
    from eval.runner import watch

    base = tiny_backbones["tiny-qwen2.5-omni"]
    recipe = Recipe.model_validate({"name": "lmms_watch", "backbone": str(base), "media": MEDIA, "eval": {
        "suites": {"lmms_eval": {"options": {"tasks": [TASK], "include_path": str(task_dir), "limit": 2,
                                             "max_new_tokens": 4}}}}})
    run_dir = tmp_path / "runs" / "lmms_watch"
    (run_dir / "dpo").mkdir(parents=True)
    _adapter_checkpoint(base, run_dir / "dpo" / "checkpoint-4", recipe)
    entries = watch(run_dir, once=True, log=lambda _: None)
    assert [label for label, _ in entries] == ["base (step 0)", "dpo/checkpoint-4"]
    for _, res in entries:
        suite = res["suites"]["lmms_eval"]
        assert suite["status"] == "ok" and suite["tasks"][TASK]["n"] == 2  # limit: lmms-eval's own
    report = (run_dir / "report.md").read_text()
    assert "## lmms_eval" in report and f"- dpo/checkpoint-4: {TASK}/videomme_perception_score " in report


def test_a_run_without_tasks_is_refused(tmp_path, tiny_backbones, task_dir):
    out = tmp_path / "out"
    argv = ["run", "--checkpoint", str(tiny_backbones["tiny-qwen2.5-omni"]), "--suites", "lmms_eval", "--out", str(out),
            "--set", f"lmms_eval.include_path={task_dir}"]
    assert eval_main(argv) == 1  # the suite errs by name; a run with nothing to evaluate is not a result
    suite = json.loads((out / "results.json").read_text())["suites"]["lmms_eval"]
    assert suite["status"] == "error" and "name at least one lmms-eval task" in suite["reason"]


def test_the_papers_general_benchmarks_are_lmms_eval_tasks():
    from eval.general import task_manager, task_names

    # Video-MME, LVBench and WorldSense ship with the pinned lmms-eval; Daily-Omni does not (see the docs).
    manager = task_manager(None)
    assert task_names(manager, ["videomme", "lvbench", "worldsense"]) == ["videomme", "lvbench", "worldsense"]
    with pytest.raises(ValueError, match=r"unknown task\(s\) daily_omni, videome;"):  # a typo is refused too
        task_names(manager, ["videomme", "daily_omni", "videome"])
    with pytest.raises(FileNotFoundError, match="not a folder of task YAMLs"):
        task_manager("no/such/folder")


def _wrapper(checkpoint: Path, tmp_path: Path, docs: list[dict]):
    from eval.checkpoint import load_checkpoint
    from eval.context import EvalContext, PredictionCache
    from eval.lmms_model import HarkenLmms
    from recipes.media import MediaSettings

    loaded = load_checkpoint(checkpoint)
    ctx = EvalContext(checkpoint=checkpoint, fingerprint=loaded.fingerprint, model=loaded.model,
                      processor=loaded.processor, media=MediaSettings.model_validate(MEDIA), out_dir=tmp_path,
                      cache=PredictionCache(tmp_path / f"{checkpoint.name}.jsonl"))
    lm = HarkenLmms(ctx)
    lm.task_dict = {"t": {"test": docs}}  # what lmms-eval's evaluator hands a model before it asks
    return lm


def _request(doc_id: int):
    from lmms_eval.api.instance import Instance

    return Instance("generate_until", ("What do you notice?", {"max_new_tokens": 3, "until": ["\n\n"]},
                                       lambda doc: doc["visual"], doc_id, "t", "test"),
                    idx=0, metadata={"task": "t", "doc_id": doc_id, "repeats": 1})


def test_wrapper_answers_clips_and_waveforms_and_caches_by_content(tmp_path, tiny_backbones, synth_dir):
    import numpy as np

    from eval.lmms_model import until_cut
    from train.vlm import build_tiny_vlm

    clip = str(synth_dir / "videos" / "synth_1_00000.mp4")
    tone = np.sin(np.linspace(0, 2000, 22050)).astype(np.float32)
    docs = [{"visual": [clip]}, {"visual": [{"array": tone, "sampling_rate": 22050}]},
            {"visual": [{"array": -tone, "sampling_rate": 22050}]}, {"visual": [clip, clip]}]
    lm = _wrapper(tiny_backbones["tiny-qwen2.5-omni"], tmp_path, docs)
    answers = lm.generate_until([_request(0), _request(1)])
    assert all(isinstance(a, str) for a in answers) and lm.ctx.cache.misses == 2
    assert lm.generate_until([_request(0), _request(1)]) == answers and lm.ctx.cache.hits == 2
    lm.generate_until([_request(2)])  # another waveform under the same document id is another input
    assert lm.ctx.cache.misses == 3
    with pytest.raises(ValueError, match="one video file"):
        lm.generate_until([_request(3)])
    with pytest.raises(NotImplementedError, match="generate_until"):
        lm.loglikelihood([_request(0)])
    # A model without audio input sees the clip's frames only, and refuses a waveform.
    vl = _wrapper(build_tiny_vlm("tiny-qwen2.5-vl", tmp_path / "vl"), tmp_path, docs)
    assert isinstance(vl.generate_until([_request(0)])[0], str)
    with pytest.raises(ValueError, match="when it takes audio"):
        vl.generate_until([_request(1)])
    assert until_cut("B\n\nbecause", ["\n\n", "</s>"]) == "B" and until_cut("B", []) == "B"


@pytest.mark.slow  # ~30 s on 2 cores: lmms-eval's command line in a subprocess, then the suite on its answers
def test_lmms_eval_command_line_runs_a_harken_checkpoint(tmp_path, tiny_backbones, task_dir):
    import os
    import subprocess
    import sys

    base = tiny_backbones["tiny-qwen2.5-omni"]
    recipe = Recipe.model_validate({"name": "lmms_cli", "backbone": str(base), "media": MEDIA})
    ck = _adapter_checkpoint(base, tmp_path / "dpo" / "checkpoint-2", recipe)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "lmms_cli"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "harken", "--model_args", f"checkpoint={ck},max_new_tokens=4",
           "--tasks", TASK, "--include_path", str(task_dir), "--output_path", str(out), "--log_samples"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    samples = [json.loads(line) for f in out.rglob(f"*_samples_{TASK}.jsonl") for line in f.read_text().splitlines()]
    assert sorted(s["doc_id"] for s in samples) == [0, 1, 2]
    assert all(s["videomme_perception_score"]["score"] in (0.0, 1.0) for s in samples)
    # The answers went to the checkpoint's prediction cache: `eval run` reuses them and makes no model call.
    assert len((ck / "eval" / "cache" / "predictions.jsonl").read_text().splitlines()) == 3
    assert eval_main(["run", "--checkpoint", str(ck), "--suites", "lmms_eval", "--set", f"lmms_eval.tasks=[{TASK}]",
                      "--set", f"lmms_eval.include_path={task_dir}", "--set", "lmms_eval.max_new_tokens=4"]) == 0
    suite = json.loads((ck / "eval" / "results.json").read_text())["suites"]["lmms_eval"]
    assert suite["cache"] == {"hits": 3, "misses": 0}
    ours = {s["doc_id"]: s["answer"] for s in suite["tasks"][TASK]["samples"]}
    assert {s["doc_id"]: s["filtered_resps"] for s in samples} == ours
