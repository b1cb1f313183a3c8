"""How a training run was launched, and refusing launches that would quietly train something else.

Harken runs as one process (``python -m train``) or as one process per device (``torchrun``, ``accelerate launch``,
one launcher per node). Three launch mistakes do not fail by themselves: ranks that each train alone on all the data
(a multi-process CPU launch whose trainer was not told to use the CPU), a launcher that starts fewer processes than
asked (``accelerate launch --cpu --num_processes 2`` starts one), and DeepSpeed dropped for plain DDP
(``ACCELERATE_USE_CPU=1``). So the world size and the engine (single process, DDP, DeepSpeed ZeRO-N) are checked
three times: before any work (:func:`prepare_launch`), once the trainer arguments exist and before the model loads
(:func:`check_arguments`), and at the first step against what actually wraps the model (:class:`LaunchRecord`, which
also writes ``<stage>/launch.json``).

Without a GPU, :func:`prepare_launch` also sets up what a CPU launch needs: DeepSpeed's CPU accelerator and its gloo
process group, started before any model is loaded (ZeRO-3 partitions weights while ``from_pretrained`` runs, which
needs the process group; TRL's trainers load the model after their arguments). Ranks talk over gloo.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from recipes.io import write_json
from recipes.schema import Recipe
from recipes.training import Stage, deepspeed_config
from train.runtime import TrainingSetupError, cuda_available

CPU_BACKEND = "gloo"  # the process-group backend every CPU-only PyTorch build has (oneCCL is a separate install)


@dataclass(frozen=True)
class Launch:
    """What the launcher started: this process's place in the run and the device kind."""

    world_size: int
    rank: int
    local_rank: int
    device: str  # "cuda" or "cpu"


def current_launch() -> Launch:
    """Read the launch from the environment that ``torchrun``/``accelerate launch``/``deepspeed`` set (a bare
    ``python`` is a world of one)."""
    env = os.environ
    return Launch(world_size=int(env.get("WORLD_SIZE", "1")), rank=int(env.get("RANK", "0")),
                  local_rank=int(env.get("LOCAL_RANK", "0")), device="cuda" if cuda_available() else "cpu")


def expected_engine(stage: Stage, world_size: int) -> str:
    """The engine a stage must run under: ``deepspeed-zero<N>`` when it names a DeepSpeed config, else ``ddp`` with
    several processes, else ``single``."""
    zero = stage.zero_stage()
    if zero is not None:
        return f"deepspeed-zero{zero}"
    return "ddp" if world_size > 1 else "single"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def prepare_launch(recipe: Recipe) -> Launch:
    """Check the launch against the recipe before any work, and set up DeepSpeed on a machine without a GPU.

    Call once, before the first stage (and before any ``TrainingArguments`` exist).
    Raises:
        TrainingSetupError: the world size is not the recipe's ``world_size``, or the environment would make
            accelerate drop DeepSpeed.
    """
    launch = current_launch()
    if recipe.world_size is not None and launch.world_size != recipe.world_size:
        raise TrainingSetupError(
            f"world_size: the recipe asks for {recipe.world_size} processes but this launch has {launch.world_size}. "
            f"Start it with `torchrun --nproc_per_node {recipe.world_size} -m train ...` (on GPUs also `accelerate "
            f"launch --num_processes {recipe.world_size} -m train ...`; `accelerate launch --cpu` starts only one "
            "process), or change world_size (--set world_size=N, or null for any)")
    deepspeed_stages = [name for name, stage in recipe.active_stages() if stage.deepspeed is not None]
    if deepspeed_stages and _truthy(os.environ.get("ACCELERATE_USE_CPU")):
        raise TrainingSetupError(
            f"stages.{deepspeed_stages[0]}.deepspeed: ACCELERATE_USE_CPU is set, which makes accelerate drop "
            "DeepSpeed and run plain DDP; unset it (Harken picks the CPU itself when there is no GPU)")
    if deepspeed_stages and launch.device == "cpu":
        _start_deepspeed_on_cpu(launch, deepspeed_stages[0])
    return launch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_deepspeed_on_cpu(launch: Launch, stage_name: str) -> None:
    accelerator = os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))  # the ops `make install` compiled
    if accelerator != "cpu":
        raise TrainingSetupError(f"stages.{stage_name}.deepspeed: DS_ACCELERATOR={accelerator} on a machine "
                                 "without a CUDA GPU; unset it or set DS_ACCELERATOR=cpu")
    if "RANK" not in os.environ:
        # A bare `python -m train`: give DeepSpeed the env:// rendezvous of a world of one, or it goes looking for
        # an MPI launcher (mpi4py).
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())))
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        raise TrainingSetupError(f"stages.{stage_name}.deepspeed: DeepSpeed picked the {get_accelerator().device_name()} "
                                 "accelerator before Harken could choose the CPU; set DS_ACCELERATOR=cpu")
    deepspeed.init_distributed(dist_backend=CPU_BACKEND)


def check_arguments(stage_name: str, stage: Stage, args, launch: Launch) -> None:
    """After the stage's ``TrainingArguments`` are built, before its model loads: the trainer must see the
    launcher's world and the recipe's DeepSpeed config.

    Raises:
        TrainingSetupError
    """
    if args.world_size != launch.world_size:
        raise TrainingSetupError(
            f"stages.{stage_name}: the launcher started {launch.world_size} processes but the trainer sees "
            f"{args.world_size}, so each rank would train alone on all the data. On a machine without a GPU the "
            "trainer needs use_cpu (Harken sets it); check that CUDA_VISIBLE_DEVICES and the launcher agree")
    has_deepspeed = getattr(args, "deepspeed_plugin", None) is not None
    if has_deepspeed != (stage.deepspeed is not None):
        raise TrainingSetupError(
            f"stages.{stage_name}.deepspeed: the recipe says {stage.deepspeed!r} but the trainer arguments "
            f"{'have' if has_deepspeed else 'have no'} DeepSpeed config (is ACCELERATE_USE_DEEPSPEED set?)")


def running_engine(trainer) -> tuple[str, int]:
    """(engine, world size) of a trainer whose training has started: read from what wraps the model."""
    import torch
    import torch.distributed as dist

    wrapped = trainer.model_wrapped
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if trainer.is_deepspeed_enabled:
        from deepspeed import DeepSpeedEngine

        if isinstance(wrapped, DeepSpeedEngine):
            return f"deepspeed-zero{wrapped.zero_optimization_stage()}", world
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        return "ddp", world
    return "single", world


class LaunchRecord(TrainerCallback):
    """At the first step: refuse to train under another engine or world size than the stage asked for; on the
    main process write ``<stage>/launch.json`` (engine, world size, device, backend, precision, quantization).

    Give it the trainer with :meth:`attach` once the trainer exists.
    """

    def __init__(self, ctx, launch: Launch):
        self.ctx, self.launch, self.trainer = ctx, launch, None

    def attach(self, trainer) -> "LaunchRecord":
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        ctx = self.ctx
        engine, world = running_engine(self.trainer)
        expected = expected_engine(ctx.stage, self.launch.world_size)
        if (engine, world) != (expected, self.launch.world_size):
            raise TrainingSetupError(
                f"stages.{ctx.name}: asked for {expected} over {self.launch.world_size} process(es), but the trainer "
                f"runs {engine} over {world}; refusing to train (see docs/scale_out.md for the launch commands)")
        if not state.is_world_process_zero:
            return
        import torch.distributed as dist

        record = {"engine": engine, "world_size": world, "device": self.launch.device,
                  "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None,
                  "precision": "bf16" if args.bf16 else "fp32",
                  "quantization": ctx.recipe.quantization.quant_type if ctx.recipe.quantization.enabled else None,
                  "gradient_checkpointing": args.activation_checkpointing,
                  "global_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * world}
        if ctx.stage.deepspeed is not None:
            zero = deepspeed_config(ctx.stage.deepspeed).get("zero_optimization", {})
            record["offload"] = {k: v.get("device") for k, v in zero.items() if k.startswith("offload_")}
        write_json(Path(ctx.out_dir) / "launch.json", record)


class RowTrace:
    """A collator wrapper that appends the ids of the rows it collates to ``<stage>/rows.rank<R>.jsonl``, one line
    per batch: which rows each rank trained on (a rank's dataloader may collate one batch ahead of the last step).

    Works in dataloader workers too (each line is one small append).
    """

    def __init__(self, collator, stage_dir: str | Path, rank: int):
        self.collator = collator
        self.path = Path(stage_dir) / f"rows.rank{rank}.jsonl"

    def __call__(self, rows):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ids": [r.get("id") for r in rows]}) + "\n")
        return self.collator(rows)


def supervise(trainer, ctx):
    """Attach the launch check (:class:`LaunchRecord`) and the row trace (:class:`RowTrace`) to a stage's trainer."""
    launch = current_launch()
    trainer.data_collator = RowTrace(trainer.data_collator, ctx.out_dir, launch.rank)
    LaunchRecord(ctx, launch).attach(trainer)
    return trainer


def extensions_dir() -> Path:
    """Where DeepSpeed's JIT-compiled CPU ops live: ``<cache>/torch_extensions`` (:func:`recipes.paths.cache_dir`), so ``make
    install`` compiles them once and every later run (and test) reuses them."""
    from recipes.paths import cache_dir

    return cache_dir() / "torch_extensions"


def prebuild_cpu_ops(log=print) -> list[str]:
    """Compile DeepSpeed's CPU ops (shared-memory collectives, CPU Adam for offload) into :func:`extensions_dir`
    on a machine without a GPU; returns their names (none on a GPU machine, whose ops DeepSpeed builds for CUDA).
    A few minutes with g++ the first time, a no-op afterwards."""
    if cuda_available():
        log("deepspeed ops: a CUDA GPU is present; DeepSpeed builds its CUDA ops on first use")
        return []
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))
    from deepspeed.accelerator import get_accelerator

    built = []
    for name in ("ShareMemCommBuilder", "CPUAdamBuilder"):
        builder = get_accelerator().create_op_builder(name)
        builder.load(verbose=False)
        built.append(builder.absolute_name())
    log(f"deepspeed ops built into {os.environ['TORCH_EXTENSIONS_DIR']}: {', '.join(built)}")
    return built


if __name__ == "__main__":  # `python -m train.launch prebuild` (make install runs it)
    import sys

    if sys.argv[1:] != ["prebuild"]:
        print("usage: python -m train.launch prebuild", file=sys.stderr)
        sys.exit(2)
    prebuild_cpu_ops()
