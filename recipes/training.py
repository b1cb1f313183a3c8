"""The recipe's training sections: ``backbone``, ``lora``, ``quantization``, ``stages`` and ``eval``.

Placeholder owned by the training issue (#4), which adds stages, LoRA, quantization and eval suites.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainingSections(BaseModel):
    """Fields of a recipe that the trainer reads; :class:`recipes.schema.Recipe` inherits them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str = Field("tiny-qwen2.5-omni", description="hub id, local folder, or a reserved tiny name")
