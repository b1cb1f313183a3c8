"""The recipe's training sections: ``backbone``, ``precision``, ``lora``, ``quantization``, ``stages``, ``eval``,
``wandb``, ``export_merged`` and ``world_size``.

``stages`` is an ordered mapping ``name -> stage``: the trainer runs them in file order into ``runs/<recipe>/<name>/``
and each stage starts from the previous one's final weights, or from an earlier stage's when it names one in
``start_from`` (a sibling branch: a control run, or an ablation from the same SFT model). A mapping (not a list) lets an ablation that
``extends:`` a base recipe change one knob of one stage (``stages: {dpo: {beta: 0.2}}``) or switch a stage off
(``enabled: false``) without restating the others.

Impossible combinations fail at load with the key that is wrong: QLoRA without LoRA, ZeRO-3 with
4-bit weights, a DPO stage with nothing to prefer, loss weights that do not line up with loss types, ...
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from recipes.data import SourceName

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
# LLaVA-NeXT and InternVL name their vision tower `vision_tower` and have a `multi_modal_projector`.
TOWERS = Literal["language_model", "audio_tower", "visual", "vision_tower", "multi_modal_projector"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoraSettings(_Section):
    """LoRA adapters (PEFT). ``enabled: false`` trains all weights of the chosen towers instead."""

    enabled: bool = Field(True, description="false: train every weight of the chosen towers instead")
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS), min_length=1,
                                      description="names of the linear layers that get adapters")
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

    enabled: bool = Field(False, description="4-bit base weights (QLoRA); needs lora.enabled (CUDA, or CPU with bitsandbytes >= 0.46.1)")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; NF4 with double quantisation is "
                                              "the QLoRA paper's recipe")
    double_quant: bool = Field(True, description="quantise the quantisation constants too (about 0.4 bit per "
                               "parameter saved)")


class StageData(_Section):
    """Which built dataset a stage reads: ``data/<recipe>/<dataset>/`` unless ``path`` says otherwise."""

    dataset: Literal["sft", "dpo"] = Field(description="built dataset name (harken build)")
    path: str | None = Field(None, description="folder of a save_to_disk dataset, overriding data/<recipe>/<dataset>")
    limit: int | None = Field(None, ge=1, description="use only the first N rows (quick runs)")
    sources: list[SourceName] | None = Field(
        None, min_length=1, description="train on the rows of these sources only (unset: all): stages and "
        "ablations share one build, e.g. a perception stage and a natural-SFT stage on the same sft set")


class SelfSampled(_Section):
    """Build the DPO pairs at the start of the stage: the current policy answers the SFT prompts greedily; an answer
    judged wrong against the reference (:func:`train.self_sampled.answers_agree`) becomes the rejected side."""

    enabled: bool = Field(True, description="build the pairs from the policy's own answers")
    max_new_tokens: int = Field(48, ge=1, description="answer length cap when the policy answers")
    batch_size: int = Field(4, ge=1, description="prompts answered at once")
    offset_tolerance: float = Field(0.5, ge=0, description="seconds: an offset this close to the reference is right")


class Stage(_Section):
    """One training stage. DPO-only knobs (``beta``, ``loss_type``, ...) are refused on an SFT stage."""

    kind: Literal["sft", "dpo"] = Field(description="sft: answer tokens' cross-entropy; dpo: preference loss")
    enabled: bool = Field(True, description="false: skip this stage (an ablation switching a stage off)")
    start_from: str | None = Field(
        None, description="name of an earlier stage whose final weights this stage starts from (a sibling branch: "
        "e.g. a control DPO run from the same SFT model as the main one); unset: the previous enabled stage")
    data: StageData
    self_sampled: SelfSampled | None = None
    epochs: float | None = Field(None, gt=0, description="passes over the stage's rows",
                                 json_schema_extra={"hf": "num_train_epochs"})
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs when set",
                                  json_schema_extra={"hf": "max_steps"})
    learning_rate: float = Field(gt=0, description="peak learning rate", json_schema_extra={"hf": "learning_rate"})
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule after warm-up", json_schema_extra={"hf": "lr_scheduler_type"})
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the stage's steps spent warming up (transformers"
                                " 5 reads a warmup_steps value below 1 as this share)",
                                json_schema_extra={"hf": "warmup_steps"})
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay", json_schema_extra={"hf": "weight_decay"})
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm",
                                 json_schema_extra={"hf": "max_grad_norm"})
    batch_size: int = Field(1, ge=1, description="per device; a DPO row is a pair, i.e. two sequences",
                            json_schema_extra={"hf": "per_device_train_batch_size"})
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps",
                            json_schema_extra={"hf": "gradient_accumulation_steps"})
    beta: float | None = Field(None, gt=0, description="DPO: pull towards the reference (unset: 0.1, TRL's default)",
                               json_schema_extra={"hf": "beta"})
    loss_type: list[DpoLoss] | None = Field(None, min_length=1, description="DPO: TRL loss types, summed "
                                            "(unset: [sigmoid])", json_schema_extra={"hf": "loss_type"})
    loss_weights: list[float] | None = Field(None, description="DPO: one weight per loss type",
                                             json_schema_extra={"hf": "loss_weights"})
    sft_weight: float | None = Field(None, gt=0, description="DPO: add the chosen-answer NLL with this weight (RPO): "
                                     "an 'sft' entry in loss_type and loss_weights")
    label_smoothing: float | None = Field(None, ge=0, lt=0.5, description="DPO: robust / exo_pair smoothing",
                                          json_schema_extra={"hf": "label_smoothing"})
    shared_prefix: bool = Field(True, description="DPO: run each pair's media prompt once for both answers (one "
                                "packed sequence per pair, same log-probs and gradients); batches whose pairs give "
                                "the two sides different audio use two full sequences per pair either way")
    precompute_ref_log_probs: bool = Field(
        False, description="DPO: run the reference over the dataset once before training and read its log-probs "
        "from there (TRL's option): no reference pass per step; the reference is fixed",
        json_schema_extra={"hf": "precompute_ref_log_probs"})
    deepspeed: str | None = Field(None, description="DeepSpeed JSON, absolute or relative to recipes/",
                                  json_schema_extra={"hf": "deepspeed"})
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less "
                                         "memory, about a third more compute",
                                         json_schema_extra={"hf": "activation_checkpointing, gradient_checkpointing"})
    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps (and at the end)",
                            json_schema_extra={"hf": "save_steps"})
    save_total_limit: int | None = Field(None, ge=1, description="keep only the last N checkpoints (null: all)",
                                         json_schema_extra={"hf": "save_total_limit"})
    logging_steps: int = Field(1, ge=1, description="log every N optimizer steps",
                               json_schema_extra={"hf": "logging_steps"})
    num_workers: int = Field(0, ge=0, description="dataloader worker processes (clip decoding)",
                             json_schema_extra={"hf": "dataloader_num_workers"})
    trainer: dict[str, Any] = Field(default_factory=dict, description="any other field of TRL's SFTConfig (sft "
                                    "stage) or DPOConfig (dpo stage), passed as it is, e.g. {optim: "
                                    "adamw_torch_fused}; checked against that class at load")

    @model_validator(mode="before")
    @classmethod
    def _dpo_knobs_only_on_dpo(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("kind") == "sft":
            for key in ("beta", "loss_type", "loss_weights", "sft_weight", "label_smoothing", "self_sampled"):
                if raw.get(key) is not None:
                    raise ValueError(f"{key}: is a DPO setting; an sft stage has no preference loss (remove it)")
            # Switches with a default: a recipe written back with every field holds their defaults on sft stages too.
            for key in ("shared_prefix", "precompute_ref_log_probs"):
                if key in raw and raw[key] != cls.model_fields[key].default:
                    raise ValueError(f"{key}: is a DPO setting; an sft stage has no preference loss (remove it)")
        return raw

    @field_validator("trainer")
    @classmethod
    def _trainer_fields_exist(cls, block: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from recipes.trainer_block import check_trainer_block

        return check_trainer_block(info.data.get("kind", "sft"), block)

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
            if self.precompute_ref_log_probs and self.trainer.get("sync_ref_model"):
                raise ValueError("precompute_ref_log_probs: a reference synced during training (trainer.sync_ref_model)"
                                 " cannot be computed once before it; turn one of them off")
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

    enabled: bool = Field(True, description="false: do not run this suite")
    options: dict[str, Any] = Field(default_factory=dict, description="the suite's own options, passed as they are")


class EvalSection(_Section):
    """Suites ``harken eval watch runs/<recipe>`` runs on every checkpoint of every stage."""

    every_checkpoint: bool = Field(True, description="False: only each stage's last checkpoint")
    base: bool = Field(True, description="also evaluate the untrained backbone (as step 0)")
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

    enabled: bool = Field(False, description="log to Weights & Biases (the same as wandb in report_to)")
    project: str = Field("harken", description="W&B project")
    entity: str | None = Field(None, description="W&B team or user (default: the key's own)")


Tracker = Literal["wandb", "tensorboard", "trackio", "mlflow"]


def _check_branches(stages: dict[str, Stage]) -> None:
    """A branch must start from weights the run will have made by then: an enabled stage earlier in file order."""
    names = list(stages)
    for i, (name, stage) in enumerate(stages.items()):
        src = stage.start_from
        if src is None or not stage.enabled:
            continue
        if src not in stages:
            raise ValueError(f"{name}.start_from: no stage named {src!r} (stages: {names})")
        if names.index(src) >= i:
            raise ValueError(f"{name}.start_from: {src!r} comes after (or is) this stage; a stage can only start "
                             "from one that runs before it")
        if not stages[src].enabled:
            raise ValueError(f"{name}.start_from: stage {src!r} is disabled, so it makes no weights; enable it or "
                             "start from another stage")


class TrainingSections(BaseModel):
    """Fields of a recipe that the trainer reads; :class:`recipes.schema.Recipe` inherits them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    backbone: str = Field("tiny-qwen2.5-omni", description="hub id, local folder, or a reserved tiny name")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 on a GPU that has it, fp32 on CPU; bf16 refuses to run on CPU",
        json_schema_extra={"hf": "bf16"})
    lora: LoraSettings = LoraSettings()
    quantization: QuantizationSettings = QuantizationSettings()
    stages: dict[str, Stage] = Field(default_factory=dict)
    export_merged: bool = Field(True, description="also write the last stage's adapter merged into full weights")
    eval: EvalSection = EvalSection()
    wandb: WandbSettings = WandbSettings()
    report_to: list[Tracker] = Field(default_factory=list, description="experiment trackers every stage logs to, "
                                     "besides log.jsonl/log.csv (wandb.enabled: true adds wandb)",
                                     json_schema_extra={"hf": "report_to"})
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
        _check_branches(stages)
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
            missing = [s for s in stage.data.sources or () if not counts[wanted].get(s)]
            if stage.data.path is None and missing:
                raise ValueError(f"stages.{name}.data.sources: {missing} have no rows in the built '{wanted}' set; "
                                 f"give them a count in data.{wanted}")
        return self

    def base_stage(self, name: str) -> str | None:
        """The stage whose final weights stage ``name`` starts from (its ``start_from``, else the previous enabled
        stage), or None for the first stage (which starts from the backbone)."""
        active = [n for n, _ in self.active_stages()]
        start = self.stages[name].start_from
        if start is not None:
            return start
        i = active.index(name)
        return active[i - 1] if i > 0 else None

    def active_stages(self) -> list[tuple[str, Stage]]:
        """(name, stage) of the enabled stages, in run order."""
        return [(n, s) for n, s in self.stages.items() if s.enabled]
