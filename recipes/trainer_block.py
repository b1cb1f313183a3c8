"""A stage's ``trainer:`` block: any other field of TRL's ``SFTConfig`` / ``DPOConfig``, passed through as it is.

Harken's own stage keys (``batch_size``, ``warmup_ratio``, ...) keep their names and are the one place to set those
settings; each records the Hugging Face field it becomes (``hf`` in its schema entry, listed by ``harken recipe
schema``). The block is checked against the TRL class at load: a name that class does not have, a field a Harken key
already sets, or a value of the wrong type is refused with the name.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

# Fields Harken sets itself from fixed choices, with why: the collators need their columns kept and decode media per
# batch, checkpoints and logs go where the run layout says, and a push carries the evaluation tables.
FIXED: dict[str, str] = {
    "output_dir": "the stage folder runs/<recipe>/<stage> (see the --runs option)",
    "run_name": "<recipe>/<stage>",
    "remove_unused_columns": "the collators read the rows' record columns",
    "max_length": "truncation would cut video and audio placeholders from their features",
    "save_strategy": "checkpoints every stages.<name>.save_steps",
    "logging_first_step": "the first step is always logged (the DPO reference check reads it)",
    "dataset_kwargs": "rows are records the collators encode, not text for TRL to prepare",
    "packing": "rows are records the collators encode, not text for TRL to prepare",
    "disable_dropout": "DPO's reference is the policy with its adapter off; dropout would make them disagree",
    "use_cpu": "chosen from the machine (no CUDA: CPU)",
    "bf16": "the recipe's precision",
    "fp16": "the recipe's precision (bf16 or fp32; fp16 overflows in the Omni audio tower)",
    "seed": "the recipe's seed",
    "data_seed": "the recipe's seed",
    "report_to": "the recipe's report_to",
    "activation_checkpointing_kwargs": "non-reentrant checkpointing, which works with frozen (LoRA) inputs",
    "gradient_checkpointing_kwargs": "non-reentrant checkpointing, which works with frozen (LoRA) inputs",
    "push_to_hub": "`harken push` uploads a checkpoint with a model card holding its evaluation tables",
}


def harken_keys() -> dict[str, str]:
    """Hugging Face field name -> the recipe key that sets it (from the ``hf`` entries of the stage schema)."""
    from recipes.training import Stage

    owned: dict[str, str] = {}
    for name, field in Stage.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        for hf in str(extra.get("hf", "")).replace(" ", "").split(","):
            if hf:
                owned.setdefault(hf, f"stages.<name>.{name}")
    return owned


@functools.cache
def config_fields(kind: str) -> dict[str, Any]:
    """Field name -> type of TRL's ``SFTConfig`` (``kind`` sft) or ``DPOConfig`` (dpo). Imports TRL (seconds)."""
    import trl

    cls = trl.SFTConfig if kind == "sft" else trl.DPOConfig
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _type_problem(annotation: Any, value: Any) -> str | None:
    from pydantic import TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # a type pydantic cannot check (rare library classes): TRL itself checks it at stage start
        return None
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        return exc.errors()[0].get("msg", "wrong type")
    return None


def check_trainer_block(kind: str, block: dict[str, Any]) -> dict[str, Any]:
    """Validate ``block`` against TRL's config class for a stage of ``kind``; return it unchanged.

    Raises:
        ValueError: naming the first field that is unknown, already set by a Harken key or fixed by Harken, or
            whose value has the wrong type.
    """
    if not block:
        return block
    cls = "SFTConfig" if kind == "sft" else "DPOConfig"
    fields = config_fields(kind)
    owned = harken_keys()
    for name, value in block.items():
        if name not in fields:
            close = [f for f in fields if name.replace("_", "") in f.replace("_", "")][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"trainer.{name}: TRL's {cls} has no field {name!r}{hint}")
        if name in owned:
            raise ValueError(f"trainer.{name}: set it with {owned[name]} (Harken's name for it), not in trainer:")
        if name in FIXED:
            raise ValueError(f"trainer.{name}: Harken sets this itself: {FIXED[name]}")
        problem = _type_problem(fields[name], value)
        if problem:
            raise ValueError(f"trainer.{name}: {problem} (TRL's {cls}.{name} is {fields[name]})")
    return block
