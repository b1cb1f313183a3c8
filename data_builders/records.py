"""The records that travel from data building to the trainer: SFT samples and preference pairs of clips, and
image SFT samples (the spectrogram benchmark's finetuning).

Media travel as paths plus intervention specs, never as bytes; the collator decodes the clip with the recipe's
media settings and applies each side's intervention to the waveform. Rows of the built HF datasets are exactly
``record.model_dump(mode="json")``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from data_builders.interventions import ORIGINAL, Intervention


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    source: str = Field(description="data source name (docs/data.md): ctp, orig_sync, mute, swap, fv_d, ...")
    source_id: str = Field(description="the annotated clip this came from (held-out splits are disjoint on it)")
    video: str = Field(description="path of the clip's file (absolute, or relative to the dataset folder)")
    start: float = Field(0.0, ge=0, description="segment start in seconds (FineVideo segments); 0 = clip start")
    end: float | None = Field(None, description="segment end in seconds; None = clip end")
    prompt: str = Field(description="user text; identical across the conditions of a clip")
    meta: dict[str, Any] = Field(default_factory=dict, description="numbers the answer was written from, etc.")


class SFTSample(_Record):
    """A single-turn conversation: the clip (with ``intervention`` applied to its audio), ``prompt``, ``answer``."""

    intervention: Intervention = ORIGINAL
    answer: str


class PreferencePair(_Record):
    """A DPO pair: one prompt, a preferred and a dispreferred answer.

    Each side carries its own audio intervention: usually the same (the clip as the model hears it), but a pair
    may contrast the answer under different audio.
    """

    chosen: str
    rejected: str
    chosen_intervention: Intervention = ORIGINAL
    rejected_intervention: Intervention = ORIGINAL


class ImageSFTSample(BaseModel):
    """A single-turn conversation about still images (paths, shown in order before ``prompt``) and its ``answer``.

    The spectrogram benchmark's finetuning rows (``source`` spectrogram_mcq, ``source_id`` the word's item id, so the
    test split stays disjoint by word); ``meta`` records the condition.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    source: str
    source_id: str
    images: list[str] = Field(min_length=1, description="image paths (absolute, or relative to the dataset folder)")
    prompt: str
    answer: str
    meta: dict[str, Any] = Field(default_factory=dict)
