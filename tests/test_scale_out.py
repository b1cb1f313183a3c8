"""Scale-out launches on CPU with two processes, through Harken's own commands on the tiny Qwen2.5-Omni thinker:
``torchrun --nproc_per_node 2 -m train`` under DDP (QLoRA, bf16), DeepSpeed ZeRO-2 and ZeRO-3, ZeRO-3 with CPU
offload (DeepSpeed's CPU Adam), a resumed ZeRO-3 run, and ``torchrun -m eval run`` against one process. Plus the launches Harken refuses.

Every two-process run trains on the same global batch (2 rows per rank x 2 ranks) as a single process with 4 rows
per step, on a recipe with LoRA dropout 0 (dropout masks are drawn per rank, so two ranks would not draw the masks
one process draws). Under those conditions the losses, gradient norms and DPO log-probabilities agree up to the
order of floating-point reductions (the gradient all-reduce sums two partial sums where one process sums four rows):
in fp32 at most 5e-7 here (one run: ZeRO-2 and ZeRO-3 SFT losses), so ``FP32_TOL`` = 1e-5 leaves room for a few
steps of drift. In bf16 (8 bits of mantissa: one rounding step is 0.4 % of a value) the same reordering moved the
gradient norm by 0.6 % and the DPO reward margin by 6e-5 (one run), so ``BF16_RTOL`` = 1e-2 with ``BF16_ATOL`` = 1e-3
for values near zero. That the ranks split each global batch between them is shown by the rows each rank collated
(``rows.rank<R>.jsonl``), and the engine and world size by ``launch.json``, written from what wrapped the model.

DeepSpeed's CPU ops (shared-memory collectives, CPU Adam) are compiled once into ``.cache/torch_extensions`` by
``make install``; a machine without them compiles them on the first run here (a few minutes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import _train_data as td
from recipes.schema import load_recipe
from train.__main__ import main as train_main
from train.callbacks import read_log
from train.launch import Launch, check_arguments, expected_engine

REPO = Path(__file__).resolve().parents[1]
FP32_TOL = 1e-5
BF16_RTOL = 1e-2
BF16_ATOL = 1e-3
COMPARED = ("loss", "grad_norm", "rewards/margins", "logps/chosen", "logps/rejected")

BODY = """
media: {{fps: 1, max_frames: 4, max_pixels: 6272}}
lora: {{dropout: 0}}
{extra}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 2, learning_rate: 1.0e-3, lr_scheduler: constant,
        batch_size: 2, save_steps: 2{sft}}}
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 2, learning_rate: 1.0e-3, lr_scheduler: constant,
        batch_size: 2, save_steps: 1{dpo}}}
"""
SINGLE = ["--set", "stages.sft.batch_size=4", "--set", "stages.dpo.batch_size=4", "--set", "stages.dpo.max_steps=3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), OMP_NUM_THREADS="1",
               HARKEN_CACHE=str(REPO / ".cache"))
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def torchrun(*args: str, nproc: int = 2) -> str:
    """``torchrun --nproc_per_node N -m ARGS``; returns the combined output, fails the test with its tail."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", *args]
    run = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1200)
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"{' '.join(cmd)} exited {run.returncode}:\n{out[-6000:]}"
    return out


def _recipe(folder: Path, name: str, backbone: Path, extra: str = "", sft: str = "", dpo: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return td.write_recipe(folder, name, f"backbone: {backbone}\n" + BODY.format(extra=extra, sft=sft, dpo=dpo))


def _steps(stage_dir: Path) -> list[dict]:
    return [r for r in read_log(stage_dir) if "loss" in r]


def assert_same_trajectory(run: Path, ref: Path, *, rtol: float = 0.0, atol: float = 0.0,
                           stages: tuple[str, ...] = ("sft", "dpo")) -> None:
    """Every logged step of each stage of ``run`` matches the single-process ``ref`` on the compared metrics."""
    for stage in stages:
        got, want = _steps(run / stage), _steps(ref / stage)
        assert got and [r["step"] for r in got] == [r["step"] for r in want][:len(got)]
        for a, b in zip(got, want):
            for key in COMPARED:
                if key in b:
                    assert a[key] == pytest.approx(b[key], rel=rtol, abs=atol), (stage, a["step"], key, a[key], b[key])


def assert_launched(run: Path, engines: dict[str, str], rows: dict[str, int]) -> None:
    """launch.json says 2 processes and the stage's engine; the ranks collated disjoint rows covering the set;
    each checkpoint and log step was written once."""
    for stage, engine in engines.items():
        launch = json.loads((run / stage / "launch.json").read_text())
        assert (launch["world_size"], launch["engine"], launch["device"], launch["global_batch"]) == (2, engine, "cpu", 4)
        if launch["world_size"] > 1:
            assert launch["backend"] == "gloo"
        seen = [[i for line in (run / stage / f"rows.rank{r}.jsonl").read_text().splitlines()
                 for i in json.loads(line)["ids"]] for r in (0, 1)]
        assert not set(seen[0]) & set(seen[1]), f"{stage}: both ranks trained on {set(seen[0]) & set(seen[1])}"
        assert len(seen[0]) == len(seen[1]) == rows[stage] // 2 and len(set(seen[0] + seen[1])) == rows[stage]
        steps = [r["step"] for r in _steps(run / stage)]
        assert steps == sorted(set(steps)), "one log line per step, not one per rank"
        for ck in (run / stage).glob("checkpoint-*"):
            assert (ck / "adapter_model.safetensors").is_file() and (ck / "recipe.yaml").is_file()
            state = json.loads((ck / "trainer_state.json").read_text())
            assert state["global_step"] == int(ck.name.split("-")[1])
        assert (run / stage / "stage.json").is_file()


@pytest.fixture(scope="module")
def data_dir(synth_dir, tmp_path_factory):
    """8 SFT rows and 8 DPO pairs: with 4 rows per step, two steps are one epoch, every row seen once."""
    root = tmp_path_factory.mktemp("scale_data")
    td.save(td.sft_records(synth_dir), root / "sft")
    td.save(td.dpo_records(synth_dir), root / "dpo")
    return root


@pytest.fixture(scope="module")
def backbone(tiny_backbones):
    return tiny_backbones["tiny-qwen2.5-omni"]


def _single(recipe: Path, runs: Path, data: Path) -> Path:
    assert train_main([str(recipe), "--runs", str(runs), "--data", str(data), *SINGLE]) == 0
    return runs / recipe.stem


# ---- DeepSpeed: SFT under ZeRO-2 then DPO under ZeRO-3; SFT under ZeRO-3 with CPU offload; fp32 --------------------

@pytest.fixture(scope="module")
def zero(backbone, data_dir, tmp_path_factory):
    """(two-process DeepSpeed run, single-process reference): same recipe, same global batch."""
    from train.launch import prebuild_cpu_ops

    prebuild_cpu_ops(log=lambda _: None)  # compiles once per machine (make install did it already)
    folder = tmp_path_factory.mktemp("zero")
    ds = _recipe(folder, "zero", backbone, sft=", deepspeed: deepspeed/zero2.json",
                 dpo=", deepspeed: deepspeed/zero3.json")
    ref = _single(_recipe(folder / "ref", "zero", backbone), folder / "ref_runs", data_dir)
    torchrun("train", str(ds), "--runs", str(folder / "runs"), "--data", str(data_dir))
    return ds, folder / "runs" / "zero", ref


@pytest.mark.slow
def test_zero2_sft_and_zero3_dpo_match_one_process(zero):
    _, run, ref = zero
    assert_launched(run, {"sft": "deepspeed-zero2", "dpo": "deepspeed-zero3"}, {"sft": 8, "dpo": 8})
    assert json.loads((run / "dpo/launch.json").read_text())["offload"] == {}
    assert_same_trajectory(run, ref, atol=FP32_TOL)
    # ZeRO-3 shards the optimizer state: each rank wrote its own partition into the checkpoint.
    shards = sorted(p.name for p in (run / "dpo/checkpoint-2").glob("global_step2/*optim_states.pt"))
    assert len(shards) == 2, shards


@pytest.mark.slow
def test_zero3_offload_sft_matches_one_process(zero, data_dir):
    recipe, run, ref = zero
    runs = run.parent.parent / "offload_runs"
    torchrun("train", str(recipe), "--runs", str(runs), "--data", str(data_dir),
             "--set", "stages.sft.deepspeed=deepspeed/zero3_offload.json", "--set", "stages.dpo.enabled=false")
    assert_launched(runs / "zero", {"sft": "deepspeed-zero3"}, {"sft": 8})
    assert json.loads((runs / "zero/sft/launch.json").read_text())["offload"] == {"offload_optimizer": "cpu",
                                                                                "offload_param": "cpu"}
    assert_same_trajectory(runs / "zero", ref, atol=FP32_TOL, stages=("sft",))


@pytest.mark.slow
def test_zero3_dpo_resumes_from_its_checkpoint(zero, data_dir):
    recipe, run, ref = zero
    out = torchrun("train", str(recipe), "--runs", str(run.parent), "--data", str(data_dir),
                   "--set", "stages.dpo.max_steps=3")
    assert "sft: complete at step 2, skipped" in out and "resuming from checkpoint-2" in out
    assert [r["step"] for r in _steps(run / "dpo")] == [1, 2, 3]
    assert sorted(p.name for p in (run / "dpo").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2",
                                                                         "checkpoint-3"]
    assert json.loads((run / "dpo/stage.json").read_text())["final_step"] == 3
    # Step 3 (the second epoch, after reloading the sharded optimizer and the RNG) is the uninterrupted one's.
    assert_same_trajectory(run, ref, atol=FP32_TOL)


# ---- DDP with QLoRA (nf4) in bf16: SFT then DPO ------------------------------------------------------------------

@pytest.fixture(scope="module")
def qlora(backbone, data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("qlora")
    extra = "precision: bf16\nquantization: {enabled: true}"
    recipe = _recipe(folder, "qlora", backbone, extra=extra, sft=", gradient_checkpointing: true",
                     dpo=", gradient_checkpointing: true")
    ref = _single(recipe, folder / "ref_runs", data_dir)
    torchrun("train", str(recipe), "--runs", str(folder / "runs"), "--data", str(data_dir))
    return folder / "runs" / "qlora", ref


@pytest.mark.slow
def test_qlora_bf16_under_ddp_matches_one_process(qlora):
    run, ref = qlora
    assert_launched(run, {"sft": "ddp", "dpo": "ddp"}, {"sft": 8, "dpo": 8})
    for stage in ("sft", "dpo"):
        launch = json.loads((run / stage / "launch.json").read_text())
        assert (launch["precision"], launch["quantization"], launch["gradient_checkpointing"]) == ("bf16", "nf4", True)
        single = json.loads((ref / stage / "launch.json").read_text())
        assert (single["engine"], single["world_size"], single["precision"]) == ("single", 1, "bf16")
    assert_same_trajectory(run, ref, rtol=BF16_RTOL, atol=BF16_ATOL)
    first = _steps(run / "dpo")[0]
    assert abs(first["rewards/margins"]) < 1e-6, "the reference is the policy with its fresh adapter disabled"


# ---- data-parallel evaluation ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_data_parallel_eval_writes_the_results_of_one_process(zero, synth_dir, tmp_path):
    from eval.__main__ import main as eval_main

    _, run, _ = zero
    clips = tmp_path / "test_clips.jsonl"
    rows = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()][:2]
    clips.write_text("".join(json.dumps({**r, "split": "test", "video": str((synth_dir / r["video"]).resolve())})
                             + "\n" for r in rows))
    ck = run / "dpo/checkpoint-2"
    args = ["run", "--checkpoint", str(ck), "--suites", "thud", "--set", f"thud.annotations={clips}",
            "--set", "thud.max_new_tokens=4"]
    assert eval_main([*args, "--out", str(tmp_path / "one")]) == 0
    torchrun("eval", *args, "--out", str(tmp_path / "two"))
    one = (tmp_path / "one/results.json").read_text()
    two = (tmp_path / "two/results.json").read_text().replace(str(tmp_path / "two"), str(tmp_path / "one"))
    assert json.loads(one)["suites"]["thud"]["status"] == "ok"
    assert two == one
    shards = sorted(p.name for p in (tmp_path / "two/cache").glob("predictions*.jsonl"))
    assert shards == ["predictions.rank0.jsonl", "predictions.rank1.jsonl"]


# ---- launches that would quietly train something else are refused -------------------------------------------------

def test_world_size_other_than_the_recipes_is_refused(backbone, data_dir, tmp_path, capsys):
    recipe = _recipe(tmp_path, "ws", backbone, extra="world_size: 2")
    assert train_main([str(recipe), "--runs", str(tmp_path / "runs"), "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "world_size: the recipe asks for 2 processes but this launch has 1" in err and "torchrun" in err
    assert not (tmp_path / "runs").exists(), "refused before any work"


def test_deepspeed_dropped_by_accelerate_use_cpu_is_refused(backbone, data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    recipe = _recipe(tmp_path, "dsdrop", backbone, sft=", deepspeed: deepspeed/zero2.json")
    assert train_main([str(recipe), "--runs", str(tmp_path / "runs"), "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "stages.sft.deepspeed: ACCELERATE_USE_CPU is set" in err and "plain DDP" in err
    assert not (tmp_path / "runs").exists()


def test_trainer_that_does_not_see_the_launchers_world_is_refused(backbone, tmp_path):
    from transformers import TrainingArguments

    stage = load_recipe(_recipe(tmp_path, "w", backbone)).stages["sft"]
    args = TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none")
    assert args.world_size == 1
    check_arguments("sft", stage, args, Launch(world_size=1, rank=0, local_rank=0, device="cpu"))
    with pytest.raises(Exception, match="launcher started 2 processes but the trainer sees 1"):
        check_arguments("sft", stage, args, Launch(world_size=2, rank=0, local_rank=0, device="cpu"))
    ds_stage = stage.model_copy(update={"deepspeed": "deepspeed/zero2.json"})
    with pytest.raises(Exception, match="have no DeepSpeed config"):
        check_arguments("sft", ds_stage, args, Launch(world_size=1, rank=0, local_rank=0, device="cpu"))
    assert [expected_engine(s, w) for s, w in ((stage, 1), (stage, 2), (ds_stage, 1))] == [
        "single", "ddp", "deepspeed-zero2"]
