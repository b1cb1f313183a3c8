"""The Thud suite's options, in a module of their own: a recipe's ``eval.suites.thud.options`` are checked when the
recipe loads, and that check must not import the suite's model code (torch and the processors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from eval.conditions import InputConditions
from eval.thud.items import DEFAULT_MARGIN, DEFAULT_OFFSETS
from eval.thud.judge import JudgeConfig
from eval.thud.metrics import DEFAULT_BAND_EDGES


class ThudOptions(BaseModel):
    """The suite's options (recipe ``eval.suites.thud.options`` or ``--set thud.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    annotations: str | None = Field(None, description="annotation JSONL of held-out clips (split: test kept)")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N held-out clips")
    split: Literal["test", "train"] = Field(
        "test", description="clips of this split of the annotation file: test (held out), or train to tune a "
                            "training recipe on its own clips without reading the held-out ones")
    modes: list[str] = Field(default_factory=lambda: ["closed_set", "free_form"])
    conditions: list[str] = Field(default_factory=lambda: ["shift", "mute", "swap"])
    offsets: list[float] = Field(default_factory=lambda: list(DEFAULT_OFFSETS))
    shifts_per_clip: int = Field(1, ge=1, description="shifted versions per clip (offsets dealt least-used first)")
    shift_gap: Literal["silence", "room_tone"] = Field(
        "silence", description="what fills the gap a shift leaves at one end of the track: silence (as the Thud "
                               "paper defines Shift), or the clip's own quietest stretch, so that only the timing "
                               "tells a shifted track (digital silence gives it away without the picture)")
    margin: float = Field(DEFAULT_MARGIN, ge=0, description="a shifted sound onset stays this far inside the clip "
                                                            "(seconds; the recipe's data.shift.margin by default)")
    band_edges: list[float] = Field(default_factory=lambda: list(DEFAULT_BAND_EDGES))
    length_normalise: bool = Field(True, description="closed set: compare mean (not summed) token log-probability")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0, description="free form: 0 = greedy, as the paper decodes")
    batch_size: int = Field(8, ge=1, description="free form: clips answered in one generate call (left-padded; "
                                                  "lower it if a large model runs out of memory)")
    judge: JudgeConfig | None = None
    sync_set: str | None = Field(None, description="VGGSoundSync-style JSONL {video, offset, band}")
    input_conditions: InputConditions | None = Field(
        None, description="closed set: ask again without audio and with fragments (eval.conditions)")

    def model_post_init(self, _ctx) -> None:
        bad = set(self.modes) - {"closed_set", "free_form"}
        if bad or not self.modes:
            raise ValueError(f"modes: {sorted(bad) or 'empty'}; choose from closed_set, free_form")
        bad = set(self.conditions) - {"shift", "mute", "swap"}
        if bad:
            raise ValueError(f"conditions: unknown {sorted(bad)}; choose from shift, mute, swap")
