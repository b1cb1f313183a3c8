"""Typed records of the Thud diagnostic ("When Vision Speaks for Sound"): labels, dimensions, conditions and the
prediction row.

A :class:`PredictionRow` is what ``predictions.jsonl`` holds, one per (source clip, dimension, condition), in the
format below; every metric is a pure function of these rows (:mod:`eval.thud.metrics`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Label = Literal["synced", "delayed", "early", "silent", "mismatched", "undetermined"]
Dimension = Literal["temporal_sync", "audio_existence", "sound_consistency"]
Condition = Literal["original", "shift", "mute", "swap"]
LabelSource = Literal["parser", "judge", "closed_set"]

LABELS: tuple[str, ...] = ("synced", "delayed", "early", "silent", "mismatched", "undetermined")
DIMENSIONS: tuple[str, ...] = ("temporal_sync", "audio_existence", "sound_consistency")
# The intervened condition of each dimension.
INTERVENED: dict[str, str] = {"temporal_sync": "shift", "audio_existence": "mute", "sound_consistency": "swap"}
SHIFT_LABELS = frozenset({"delayed", "early"})
# Figure 3 axes of "When Vision Speaks for Sound": labels that claim a sound is there.
SOUND_PRESENT = frozenset({"synced", "delayed", "early", "mismatched"})


class PredictionRow(BaseModel):
    """One labelled answer (the input of ``metrics thud``). Extra fields (mode, raw text, option order, scores)
    are kept and ignored by the metrics."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    source_id: str = Field(min_length=1)
    dimension: Dimension
    condition: Condition
    offset: float | None = Field(None, description="shift only: seconds, > 0 = audio delayed")
    label: Label
    predicted_offset: float | None = Field(None, description="seconds the answer states, when it states one")
    labelled_by: LabelSource | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "PredictionRow":
        if self.condition not in ("original", INTERVENED[self.dimension]):
            raise ValueError(f"condition {self.condition!r} does not belong to dimension {self.dimension!r} "
                             f"(its intervened condition is {INTERVENED[self.dimension]!r})")
        if self.condition == "shift" and not self.offset:
            raise ValueError("a shift row needs a non-zero 'offset' (seconds, > 0 = audio delayed)")
        return self


def is_correct(row: PredictionRow) -> bool:
    """Whether a row's label is correct for its dimension and condition (docs/metrics.md). ``undetermined`` is
    never correct, and never counted as synced."""
    label = row.label
    if row.dimension == "temporal_sync":
        if row.condition == "original":
            return label == "synced"
        return label == ("delayed" if row.offset > 0 else "early")
    if row.dimension == "audio_existence":
        if row.condition == "original":
            return label not in ("silent", "undetermined")
        return label == "silent"
    if row.condition == "original":
        return label in ("synced", "delayed", "early")
    return label == "mismatched"
