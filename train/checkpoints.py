"""Checkpoint layout, stage completion markers and merged exports.

Layout of ``runs/<recipe>/<stage>/``::

    checkpoint-<step>/   adapter_model.safetensors + adapter_config.json (LoRA; base_model_name_or_path = the
                         stage's base) or model.safetensors + config.json (full fine-tuning); processor files;
                         trainer_state.json, optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin;
                         recipe.yaml (the resolved recipe)
    merged/              the last checkpoint's adapter merged into full weights + processor + recipe.yaml
                         (the next stage's base; for the last stage only with export_merged)
    log.jsonl, log.csv   training logs
    started.json         the settings the stage was started with (a resume must match them)
    stage.json           written last: the stage is complete (final step, checkpoint, merged folder, fingerprint)
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

_CKPT = re.compile(r"^checkpoint-(\d+)$")


class StageResult(BaseModel):
    """Contents of ``stage.json``: what a finished stage produced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    kind: str
    fingerprint: str
    final_step: int
    checkpoint: str           # absolute folder of the last checkpoint
    weights: str              # absolute folder of full weights the next stage starts from
    base: str


def checkpoints(stage_dir: str | Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a stage that hold a trainer state, in step order."""
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in stage_dir.iterdir()
             if p.is_dir() and (m := _CKPT.match(p.name)) and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def last_checkpoint(stage_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a stage, or None."""
    found = checkpoints(stage_dir)
    return found[-1] if found else None


def checkpoint_step(path: str | Path) -> int:
    """The step number in a ``checkpoint-<step>`` folder name."""
    m = _CKPT.match(Path(path).name)
    if not m:
        raise ValueError(f"{path} is not a checkpoint-<step> folder")
    return int(m.group(1))


def fingerprint(parts: dict[str, Any]) -> str:
    """Stable short hash of JSON-able settings."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_fingerprint(folder: Path) -> str | None:
    """The HF ``save_to_disk`` fingerprint(s) of a dataset folder (changes when the data does)."""
    state = folder / "state.json"
    if state.is_file():
        return json.loads(state.read_text(encoding="utf-8")).get("_fingerprint")
    return None


def read_result(stage_dir: str | Path) -> StageResult | None:
    """The ``stage.json`` of a finished stage, or None."""
    path = Path(stage_dir) / "stage.json"
    if not path.is_file():
        return None
    return StageResult.model_validate_json(path.read_text(encoding="utf-8"))


def write_result(stage_dir: str | Path, result: StageResult) -> None:
    """Mark a stage complete (written last, atomically)."""
    from recipes.io import write_text

    write_text(Path(stage_dir) / "stage.json", result.model_dump_json(indent=2))


def is_adapter(folder: str | Path) -> bool:
    """True for a PEFT adapter checkpoint."""
    return (Path(folder) / "adapter_config.json").is_file()


def export_merged(base: str, adapter_dir: str | Path, out_dir: str | Path, recipe, dtype=None) -> Path:
    """Merge a LoRA checkpoint into its base weights and save full weights + processor + recipe.yaml to ``out_dir``.

    The base is re-loaded unquantised (bf16 on GPU recipes, fp32 otherwise) so a QLoRA adapter merges into real
    weights, not into dequantised 4-bit ones. Written to a temporary folder first, so a crash leaves no half export.
    """
    from peft import PeftModel

    from recipes.io import staged_folder
    from recipes.schema import dump_recipe
    from train.backbones import load_backbone

    out_dir = Path(out_dir)
    # After a ZeRO-3 stage the trainer's DeepSpeed config is still registered, and from_pretrained would try to
    # partition this single-process load across ranks that are not taking part.
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    model, processor = load_backbone(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with staged_folder(out_dir) as tmp:
        merged.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        dump_recipe(recipe, tmp / "recipe.yaml")
    return out_dir
