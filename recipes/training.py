"""The recipe's training sections: ``backbone``, ``precision``, ``lora``, ``quantization``, ``stages``, ``eval``,
``wandb``, ``export_merged`` and ``world_size``.

``stages`` is an ordered mapping ``name -> stage``: the trainer runs them in file order into ``runs/<recipe>/<name>/``
and each stage starts from the previous one's final weights. A mapping (not a list) lets an ablation that
``extends:`` a base recipe change one knob of one stage (``stages: {dpo: {beta: 0.2}}``) or switch a stage off
(``enabled: false``) without restating the others.

Impossible combinations fail at load with the key that is wrong (style.md §3): QLoRA without LoRA, ZeRO-3 with
4-bit weights, a DPO stage with nothing to prefer, loss weights that do not line up with loss types, ...
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

RECIPES_DIR = Path(__file__).resolve().parent

# TRL 1.x `DPOConfig.loss_type` values (trl/trainer/dpo_config.py). "sft" is the NLL of the chosen answer: listing it
# with a weight is the RPO-style SFT mix (`sft_weight` below adds it for you).
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
DpoLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]

# Module names of the Qwen-Omni thinkers' decoder projections (attention + dense MLP); the MoE experts of
# Qwen3-Omni are fused parameters, so on that backbone these match attention and shared projections only.
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Attribute names of the thinker's parts under `model.` (transformers 5.x layout of both Omni generations).
TOWERS = Literal["language_model", "audio_tower", "visual"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(_Section):
    """LoRA adapters (PEFT). ``enabled: false`` trains all weights of the chosen towers instead."""

    enabled: bool = True
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS), min_length=1)
    towers: list[TOWERS] = Field(default_factory=lambda: ["language_model"], min_length=1,
                                 description="which parts of the thinker get adapters")

    def target_regex(self) -> str:
        """PEFT ``target_modules`` regex: the listed projections inside the listed towers only."""
        towers = "|".join(re.escape(t) for t in self.towers)
        names = "|".join(re.escape(n) for n in self.target_modules)
        return rf"(.*\.)?model\.({towers})\..*\.({names})"


class QuantizationSettings(_Section):
    """QLoRA: the frozen base weights in 4-bit (bitsandbytes; on CPU too from bitsandbytes 0.46.1), adapters in the
    compute precision."""

    enabled: bool = False
    quant_type: Literal["nf4", "fp4"] = "nf4"  # NF4 + double quantisation = the QLoRA paper's recipe
    double_quant: bool = True


class StageData(_Section):
    """Which built dataset a stage reads: ``data/<recipe>/<dataset>/`` unless ``path`` says otherwise."""

    dataset: Literal["sft", "dpo"] = Field(description="built dataset name (python -m data_builders build)")
    path: str | None = Field(None, description="folder of a save_to_disk dataset, overriding data/<recipe>/<dataset>")
    limit: int | None = Field(None, ge=1, description="use only the first N rows (quick runs)")


class SelfSampled(_Section):
    """Build the DPO pairs at the start of the stage: the current policy answers the SFT prompts greedily; an answer
    judged wrong against the reference (:func:`train.self_sampled.answers_agree`) becomes the rejected side."""

    enabled: bool = True
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(4, ge=1)
    offset_tolerance: float = Field(0.5, ge=0, description="seconds: an offset this close to the reference is right")


class Stage(_Section):
    """One training stage. DPO-only knobs (``beta``, ``loss_type``, ...) are refused on an SFT stage."""

    kind: Literal["sft", "dpo"]
    enabled: bool = True
    data: StageData
    self_sampled: SelfSampled | None = None
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    learning_rate: float = Field(gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    batch_size: int = Field(1, ge=1, description="per device; a DPO row is a pair, i.e. two sequences")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    beta: float | None = Field(None, gt=0, description="DPO: pull towards the reference (unset: 0.1, TRL's default)")
    loss_type: list[DpoLoss] | None = Field(None, min_length=1, description="DPO: TRL loss types, summed "
                                            "(unset: [sigmoid])")
    loss_weights: list[float] | None = Field(None, description="DPO: one weight per loss type")
    sft_weight: float | None = Field(None, gt=0, description="DPO: add the chosen-answer NLL with this weight (RPO)")
    label_smoothing: float | None = Field(None, ge=0, lt=0.5, description="DPO: robust / exo_pair smoothing")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON, absolute or relative to recipes/")
    gradient_checkpointing: bool = False
    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps (and at the end)")
    save_total_limit: int | None = Field(None, ge=1, description="keep only the last N checkpoints (None: all)")
    logging_steps: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0, description="dataloader worker processes (clip decoding)")

    @model_validator(mode="before")
    @classmethod
    def _dpo_knobs_only_on_dpo(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("kind") == "sft":
            for key in ("beta", "loss_type", "loss_weights", "sft_weight", "label_smoothing", "self_sampled"):
                if raw.get(key) is not None:
                    raise ValueError(f"{key}: is a DPO setting; an sft stage has no preference loss (remove it)")
        return raw

    @field_validator("loss_weights")
    @classmethod
    def _weights_match_types(cls, weights: list[float] | None, info: ValidationInfo) -> list[float] | None:
        types = info.data.get("loss_type") or ["sigmoid"]
        if weights is not None and len(weights) != len(types):
            raise ValueError(f"{len(weights)} loss_weights for {len(types)} loss_type entries {types}: give one "
                             "weight per loss type")
        return weights

    @model_validator(mode="after")
    def _check(self) -> "Stage":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set epochs or max_steps")
        if self.kind == "sft" and self.data.dataset != "sft":
            raise ValueError("data.dataset: an sft stage trains on SFT samples: use dataset: sft")
        if self.kind == "dpo":
            sampled = self.self_sampled is not None and self.self_sampled.enabled
            if self.data.dataset != "dpo" and not sampled:
                raise ValueError("data.dataset: a dpo stage needs preference pairs: use dataset: dpo, or keep "
                                 "dataset: sft and set self_sampled to build pairs from the policy's own answers")
            if self.data.dataset == "dpo" and sampled:
                raise ValueError("self_sampled: builds pairs from SFT prompts and reference answers; set "
                                 "data.dataset: sft")
            types = self.loss_type or ["sigmoid"]
            if self.sft_weight is not None and "sft" in types:
                raise ValueError("sft_weight: 'sft' is already in loss_type; set its weight in loss_weights instead")
            if sampled and self.zero_stage() == 3:
                raise ValueError("self_sampled: the policy generates before DeepSpeed starts, with whole weights on "
                                 "every rank; ZeRO-3 would shard them. Use deepspeed/zero2.json for this stage")
            if "exo_pair" in types and not self.label_smoothing:
                raise ValueError("label_smoothing: exo_pair needs label_smoothing > 0 (EXO paper: 1e-3)")
        if self.deepspeed is not None:
            deepspeed_config(self.deepspeed)  # missing / unreadable file fails here, at load
        return self

    def dpo_losses(self) -> tuple[list[str], list[float]]:
        """The TRL ``loss_type`` list and ``loss_weights``, with ``sft_weight`` appended as an ``sft`` term."""
        types = list(self.loss_type or ["sigmoid"])
        weights = list(self.loss_weights or [1.0] * len(types))
        if self.sft_weight is not None:
            types.append("sft")
            weights.append(self.sft_weight)
        return types, weights

    def zero_stage(self) -> int | None:
        """The ZeRO stage of the DeepSpeed config, or None without DeepSpeed."""
        if self.deepspeed is None:
            return None
        return int(deepspeed_config(self.deepspeed).get("zero_optimization", {}).get("stage", 0))


def deepspeed_path(path: str) -> Path:
    """Resolve a stage's ``deepspeed`` path: absolute, relative to the working directory, or to ``recipes/``."""
    p = Path(path)
    for cand in (p, RECIPES_DIR / p):
        if cand.is_file():
            return cand.resolve()
    raise ValueError(f"deepspeed: {path!r} is neither a file nor one under {RECIPES_DIR} (see recipes/deepspeed/)")


def deepspeed_config(path: str) -> dict:
    """Read a DeepSpeed JSON. Raises ValueError naming the file when it is missing or not JSON."""
    resolved = deepspeed_path(path)
    try:
        cfg = json.loads(resolved.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"deepspeed: {resolved} is not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"deepspeed: {resolved} must hold a JSON object")
    return cfg


class EvalSuite(_Section):
    """One eval suite to run on every checkpoint; ``options`` go to the suite as they are."""

    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class EvalSection(_Section):
    """Suites ``python -m eval watch runs/<recipe>`` runs on every checkpoint of every stage."""

    every_checkpoint: bool = Field(True, description="False: only each stage's last checkpoint")
    suites: dict[str, EvalSuite] = Field(default_factory=dict)

    @field_validator("suites")
    @classmethod
    def _names(cls, suites: dict[str, EvalSuite]) -> dict[str, EvalSuite]:
        for name in suites:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"{name!r}: suite names are lower_snake_case (e.g. thud, spectrogram_mcq)")
        return suites


class WandbSettings(_Section):
    """Weights & Biases logging. Offline (files under ./wandb) when no WANDB_API_KEY is set; JSONL/CSV logs are
    written either way."""

    enabled: bool = False
    project: str = "harken"
    entity: str | None = None


class TrainingSections(BaseModel):
    """Fields of a recipe that the trainer reads; :class:`recipes.schema.Recipe` inherits them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str = Field("tiny-qwen2.5-omni", description="hub id, local folder, or a reserved tiny name")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 on a GPU that has it, fp32 on CPU; bf16 refuses to run on CPU")
    lora: LoraSettings = LoraSettings()
    quantization: QuantizationSettings = QuantizationSettings()
    stages: dict[str, Stage] = Field(default_factory=dict)
    export_merged: bool = Field(True, description="also write the last stage's adapter merged into full weights")
    eval: EvalSection = EvalSection()
    wandb: WandbSettings = WandbSettings()
    world_size: int | None = Field(None, ge=1, description="processes the run must be launched with (GPUs per node "
                                   "x nodes); training refuses another count. None: any")

    @field_validator("quantization")
    @classmethod
    def _qlora_needs_lora(cls, quant: QuantizationSettings, info: ValidationInfo) -> QuantizationSettings:
        lora = info.data.get("lora")
        if quant.enabled and lora is not None and not lora.enabled:
            raise ValueError("enabled: 4-bit weights cannot be trained directly; QLoRA needs lora.enabled: true")
        return quant

    @field_validator("stages")
    @classmethod
    def _stages_fit(cls, stages: dict[str, Stage], info: ValidationInfo) -> dict[str, Stage]:
        for name in stages:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise ValueError(f"{name!r}: a stage name is a folder name (letters, digits, _ . -)")
        quant = info.data.get("quantization")
        for name, stage in stages.items():
            if quant is not None and quant.enabled and stage.enabled and stage.zero_stage() == 3:
                raise ValueError(f"stages.{name}.deepspeed: ZeRO-3 shards parameters, which 4-bit bitsandbytes "
                                 "weights cannot be; use a ZeRO-2 config with quantization, or turn quantization off")
        return stages

    @model_validator(mode="after")
    def _stages_have_data(self) -> "TrainingSections":
        # Cross-section check, run on the whole Recipe (which adds `data`): when the recipe's data section builds
        # datasets, a stage reading one of them (no data.path of its own) must find at least one source in it.
        data = getattr(self, "data", None)
        counts = {part: getattr(data, part, None) or {} for part in ("sft", "dpo")}
        if not any(n > 0 for part in counts.values() for n in part.values()):
            return self  # the data is built elsewhere (data.path, --data) or the data section is not filled in yet
        for name, stage in self.active_stages():
            wanted = stage.data.dataset
            if stage.data.path is None and not any(n > 0 for n in counts[wanted].values()):
                raise ValueError(f"stages.{name}.data: reads the built '{wanted}' set, but data.{wanted} lists no "
                                 f"source with a count > 0; add counts to data.{wanted} or set "
                                 f"stages.{name}.data.path")
        return self

    def active_stages(self) -> list[tuple[str, Stage]]:
        """(name, stage) of the enabled stages, in run order."""
        return [(n, s) for n, s in self.stages.items() if s.enabled]
