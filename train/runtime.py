"""What every stage sets up the same way: device and precision checks, model loading (bf16 / 4-bit), the LoRA
config, the trainer arguments shared by SFT and DPO, and reading a stage's dataset.

Packages a recipe needs (bitsandbytes for QLoRA, DeepSpeed) are checked here before any model is loaded, so a recipe
stops with what to change instead of failing deep inside a library. bf16, QLoRA and DeepSpeed also run on CPU (how
the tests run them); launching several processes is :mod:`train.launch`'s part.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipes.cli import UserError
from recipes.paths import build_command
from recipes.schema import Recipe
from recipes.training import Stage, deepspeed_path


class TrainingSetupError(UserError):
    """A recipe that cannot run on this machine or with these inputs; the message says what to change."""


@dataclass(frozen=True)
class StageContext:
    """Where a stage runs and what it starts from."""

    recipe: Recipe
    name: str
    stage: Stage
    out_dir: Path      # runs/<recipe>/<stage>
    base: str          # backbone name / folder the stage's weights start from
    base_ref: str      # what adapters record as base_model_name_or_path (hub id, or an absolute folder)
    data_root: Path    # data/<recipe>
    is_last: bool


def is_main_process() -> bool:
    """Global rank 0 (or a single process). Read from the launcher's environment, not from accelerate's state:
    creating that state before the first ``TrainingArguments`` would fix it without the DeepSpeed plugin and with
    the default timeouts."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every rank once the process group exists (the first trainer creates it); a no-op before that and
    in single-process runs."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# bitsandbytes' first release with CPU 4-bit kernels (also transformers 5's minimum): QLoRA runs on CPU from there.
BNB_CPU_MIN = (0, 46, 1)


def check_hardware(recipe: Recipe, stage_name: str, stage: Stage) -> None:
    """Refuse settings this machine cannot run, and missing packages, with the key to change.

    Everything runs on CPU too (bf16 autocast, 4-bit QLoRA, DeepSpeed ZeRO through its CPU accelerator), slowly:
    that is how the tests exercise these paths without a GPU.
    Raises:
        TrainingSetupError
    """
    if recipe.quantization.enabled:
        try:
            import bitsandbytes
        except ImportError as exc:
            raise TrainingSetupError("quantization.enabled needs bitsandbytes: pip install -e .") from exc
        if not cuda_available() and _version(bitsandbytes.__version__) < BNB_CPU_MIN:
            raise TrainingSetupError(
                f"quantization.enabled: bitsandbytes {bitsandbytes.__version__} has no CPU 4-bit kernels; install "
                f"bitsandbytes>={'.'.join(map(str, BNB_CPU_MIN))} (pip install -e .) or use a CUDA GPU")
    if stage.deepspeed is not None:
        try:
            import deepspeed  # noqa: F401
        except ImportError as exc:
            raise TrainingSetupError(f"stages.{stage_name}.deepspeed needs DeepSpeed: pip install -e .") from exc
    check_trackers(recipe)


# report_to name -> (module that must import, what to install). TensorBoard logging in transformers takes either.
TRACKER_PACKAGES = {"wandb": (("wandb",), "wandb"), "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
                    "trackio": (("trackio",), "trackio"), "mlflow": (("mlflow",), "mlflow")}


def check_trackers(recipe: Recipe) -> None:
    """Refuse a tracker in ``report_to`` whose package is not installed, with the command that installs it.

    Raises:
        TrainingSetupError
    """
    import importlib.util

    for tracker in report_targets(recipe, configure=False):
        modules, package = TRACKER_PACKAGES[tracker]
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            raise TrainingSetupError(f"report_to: {tracker} needs the {package} package: pip install {package} "
                                     f"(or remove {tracker} from report_to)")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def compute_dtype(recipe: Recipe):
    """bf16 where the recipe asks and the GPU has it ('auto'), fp32 otherwise (CPU tests are fp32)."""
    import torch

    if recipe.precision == "bf16":
        return torch.bfloat16
    if recipe.precision == "auto" and cuda_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def local_device():
    """This process's device: its GPU under accelerate/torchrun (LOCAL_RANK), else cuda:0 or cpu."""
    import torch

    if cuda_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def load_model(recipe: Recipe, stage: Stage, base: str, base_ref: str):
    """Load (thinker, processor) from ``base`` in the stage's precision, 4-bit when QLoRA is on.

    Without LoRA, everything outside ``lora.towers`` is frozen (full fine-tuning of the chosen towers).
    ``base_ref`` becomes ``model.name_or_path``, which PEFT writes into ``adapter_config.json``.
    """
    from train.backbones import load_backbone

    dtype = compute_dtype(recipe)
    quant = None
    device_map = None
    if recipe.quantization.enabled:
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=recipe.quantization.quant_type,
                                   bnb_4bit_use_double_quant=recipe.quantization.double_quant,
                                   bnb_4bit_compute_dtype=dtype)
        device_map = {"": local_device()}  # 4-bit weights are placed at load; one full copy per process (DDP)
    model, processor = load_backbone(base, dtype=dtype, device_map=device_map, quantization_config=quant)
    # TRL's fused LM head runs `model.base_model` and projects its last hidden state; that must be the multimodal
    # backbone, or the towers would be skipped (extra keywords swallowed by **kwargs) without any error.
    # A vision-language backbone (the spectrogram benchmark's) has no audio tower to check for.
    from train.inputs import takes_audio

    needs = ("get_audio_features", "get_video_features") if takes_audio(processor) else ("get_image_features",)
    if not all(hasattr(model.base_model, n) for n in needs):
        raise TrainingSetupError(
            f"{type(model).__name__}.base_model is {type(model.base_model).__name__}, not the thinker's multimodal "
            "backbone: TRL's fused LM head would skip the audio and video towers. This transformers version "
            "lays the thinker out differently; use transformers>=5.0 as pinned in pyproject.toml")
    model.name_or_path = base_ref
    model.config._name_or_path = base_ref
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        # Non-reentrant, as the trainer's own checkpointing: PEFT's default (reentrant) breaks DDP's gradient
        # hooks ("Expected to mark a variable ready only once").
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=stage.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if not recipe.lora.enabled:
        prefixes = tuple(f"model.{t}." for t in recipe.lora.towers)
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith(prefixes) or name.startswith("lm_head.")
    return model, processor


def lora_config(recipe: Recipe, model=None):
    """The PEFT ``LoraConfig`` of the recipe, or None when LoRA is off.

    No ``task_type``: the generic ``PeftModel`` forwards every keyword (video tensors, ``use_audio_in_video``) to the
    thinker unchanged, where the causal-LM wrapper would reinterpret some of them.
    Raises:
        TrainingSetupError: LoRA dropout on a mixture-of-experts thinker (Qwen3-Omni), whose fused expert weights
            PEFT adapts as parameters, which it supports only without dropout.
    """
    if not recipe.lora.enabled:
        return None
    from peft import LoraConfig

    lora = recipe.lora
    moe = model is not None and getattr(model.config.get_text_config(), "num_experts", 0)
    if moe and lora.dropout and {"gate_proj", "up_proj", "down_proj"} & set(lora.target_modules):
        raise TrainingSetupError("lora.dropout: LoRA on the fused MoE experts of this backbone (Qwen3-Omni) needs "
                                 "dropout 0 (a PEFT limit); use --set lora.dropout=0, or drop gate_proj/up_proj/"
                                 "down_proj from lora.target_modules to adapt attention only")
    if model is None:
        return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=lora.target_regex(), bias="none")
    modules, parameters = lora_targets(model, lora.target_modules, lora.towers)
    if not modules and not parameters:
        parts = sorted({n.split(".")[1] for n, _ in model.named_modules() if n.startswith("model.")})
        raise TrainingSetupError(f"lora: no module of {type(model).__name__} is one of {lora.target_modules} "
                                 f"inside towers {lora.towers}; this backbone's parts are {parts}")
    # A fused gate+up expert weight holds two projections: twice the rank and alpha keeps each one's update the
    # size a separate adapter would have (what PEFT does when it fuses them itself).
    fused = {r".*\.gate_up_proj": 2} if any(p.endswith(".experts.gate_up_proj") for p in parameters) else {}
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=modules,
                      target_parameters=parameters or None, bias="none",
                      rank_pattern={pat: lora.r * k for pat, k in fused.items()},
                      alpha_pattern={pat: lora.alpha * k for pat, k in fused.items()})


# Fused mixture-of-experts weights (transformers 5.x) and the per-expert projection names they hold: a fused
# parameter is adapted when every projection fused into it is a target.
FUSED_EXPERT_PARAMETERS = {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}


def module_tower(name: str) -> str | None:
    """The thinker part a module or parameter name lives in (``model.<tower>.``), or None (e.g. ``lm_head``)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "model" else None


def lora_targets(model, target_modules: list[str], towers: list[str]) -> tuple[list[str], list[str]]:
    """The exact modules and fused expert parameters LoRA adapts: ``(module names, parameter names)``.

    Full names, never bare ones: PEFT rewrites a regex ``target_modules`` into bare leaf names for mixture-of-experts
    checkpoints (Qwen3-Omni), and a bare ``q_proj`` also matches the audio and vision towers' attention. A linear
    module is a target when its last name is in ``target_modules`` and it lives in one of ``towers``; a fused
    expert weight (``experts.gate_up_proj``/``experts.down_proj``) when all projections fused into it are targets.
    """
    import torch

    wanted, inside = set(target_modules), set(towers)
    modules = [name for name, mod in model.named_modules()
               if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in wanted
               and module_tower(name) in inside]
    parameters = [name for name, _ in model.named_parameters()
                  if module_tower(name) in inside and name.rsplit(".", 2)[-2:-1] == ["experts"]
                  and set(FUSED_EXPERT_PARAMETERS.get(name.rsplit(".", 1)[-1], ("-",))) <= wanted]
    return modules, parameters


def trainer_kwargs(ctx: StageContext, report_to: list[str]) -> dict[str, Any]:
    """Arguments shared by ``SFTConfig`` and ``DPOConfig`` for a stage (``report_to``: see :func:`report_targets`)."""
    import torch

    recipe, stage = ctx.recipe, ctx.stage
    bf16 = compute_dtype(recipe) == torch.bfloat16
    kwargs: dict[str, Any] = dict(
        output_dir=str(ctx.out_dir),
        per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum,
        learning_rate=stage.learning_rate,
        lr_scheduler_type=stage.lr_scheduler,
        # transformers 5 has no warmup_ratio field: its warmup_steps takes the ratio itself (a value < 1 is a share
        # of the total steps), so the recipe's ratio goes in unchanged and scales with the stage's length.
        warmup_steps=stage.warmup_ratio,
        weight_decay=stage.weight_decay,
        max_grad_norm=stage.max_grad_norm,
        num_train_epochs=stage.epochs if stage.epochs is not None else 1.0,
        max_steps=stage.max_steps if stage.max_steps is not None else -1,
        logging_steps=stage.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=stage.save_steps,
        save_total_limit=stage.save_total_limit,
        seed=recipe.seed,
        data_seed=recipe.seed,
        bf16=bf16,
        fp16=False,
        activation_checkpointing=stage.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        # Non-reentrant checkpointing works with frozen inputs (LoRA) and is PyTorch's recommended mode.
        activation_checkpointing_kwargs={"use_reentrant": False} if stage.gradient_checkpointing else None,
        deepspeed=str(deepspeed_path(stage.deepspeed)) if stage.deepspeed else None,
        # Rows are records (paths + intervention specs) the collators decode; Trainer must not drop their columns.
        remove_unused_columns=False,
        dataloader_num_workers=stage.num_workers,
        report_to=report_to,
        # One bar per stage (train.callbacks.StageProgress), also when transformers' logger is set quieter than
        # WARNING (its default then turns the bar off and prints every log record instead).
        disable_tqdm=False,
        run_name=f"{recipe.name}/{ctx.name}",
        max_length=None,  # truncating would cut video/audio placeholders away from their features
    )
    if not cuda_available():
        # Without use_cpu, ranks of a multi-process CPU launch never form a process group: each trains alone on
        # all the data. gloo is the backend every CPU build of PyTorch has (accelerate would pick MPI where a build
        # has it); a single process has no process group to give a backend to.
        kwargs["use_cpu"] = True
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            kwargs["ddp_backend"] = "gloo"
    kwargs.update(stage.trainer)  # checked at load: only fields no Harken key sets, with the right types
    return kwargs


def report_targets(recipe: Recipe, configure: bool = True) -> list[str]:
    """``report_to`` for the recipe's stages: its ``report_to`` list, plus wandb when ``wandb.enabled``; ["none"]
    when empty. With ``configure``, W&B gets its project and entity, and runs offline without WANDB_API_KEY.

    The environment wins: WANDB_MODE=disabled (the tests' setting) drops wandb even when the recipe asks for it.
    """
    targets = list(dict.fromkeys([*recipe.report_to, *(["wandb"] if recipe.wandb.enabled else [])]))
    if "wandb" in targets and os.environ.get("WANDB_MODE") == "disabled":
        targets.remove("wandb")
    if configure and "wandb" in targets:
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_PROJECT", recipe.wandb.project)
        if recipe.wandb.entity:
            os.environ.setdefault("WANDB_ENTITY", recipe.wandb.entity)
    if not configure:
        return targets
    return targets or ["none"]


def dataset_dir(ctx: StageContext) -> Path:
    """Folder of the stage's dataset: ``data.path`` or ``data/<recipe>/<dataset>``."""
    d = ctx.stage.data
    return Path(d.path) if d.path else ctx.data_root / d.dataset


def load_rows(ctx: StageContext):
    """The stage's HF dataset (``save_to_disk`` format): the rows of ``data.sources`` (all when unset), cut to
    ``data.limit`` rows.

    Raises:
        TrainingSetupError: no dataset there, with the command that builds it.
    """
    from datasets import load_from_disk

    folder = dataset_dir(ctx)
    if not (folder / "dataset_info.json").is_file() and not (folder / "state.json").is_file():
        raise TrainingSetupError(
            f"stages.{ctx.name}.data: no dataset at {folder}; build it with "
            f"`{build_command(ctx.recipe.name, ctx.recipe._source, ctx.data_root)}` or point "
            f"stages.{ctx.name}.data.path at one")
    ds = load_from_disk(str(folder))
    if ctx.stage.data.sources is not None:
        keep = set(ctx.stage.data.sources)
        ds = ds.filter(lambda source: source in keep, input_columns="source", keep_in_memory=True)
    if ctx.stage.data.limit is not None:
        ds = ds.select(range(min(ctx.stage.data.limit, len(ds))))
    if len(ds) == 0:
        raise TrainingSetupError(f"stages.{ctx.name}.data: {folder} has no rows")
    return ds
