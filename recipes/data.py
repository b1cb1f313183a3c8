"""The recipe's ``data`` section: where the inputs are, how interventions are drawn, exact counts per source for SFT
and DPO, and the held-out test split. Read by ``python -m data_builders build`` (:mod:`data_builders.build`).

Paths are relative to the recipe file's folder, else to the repository root (absolute paths are taken as given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent

# Source names of training.md's table. ``self_sampled`` is not here: the trainer builds it from the SFT set.
# ``spectrogram_mcq`` is the image source of the spectrogram benchmark's finetuning (spectrogram_mcq.md).
SourceName = Literal["ctp", "orig_sync", "mute", "swap", "fv_d", "fv_a_l", "llava_video", "spectrogram_mcq"]
CLIP_SOURCES = ("ctp", "orig_sync", "mute", "swap")  # built from annotated clips (Oops / synth / transitions)
FINEVIDEO_SOURCES = ("fv_d", "fv_a_l")
IMAGE_SOURCES = ("spectrogram_mcq",)  # rows of images + text, no clip: a dataset holds these or clip rows, not both


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthInput(_Section):
    """Synthetic impact clips generated into ``<data dir>/synth/`` (the offline stand-in for Oops)."""

    clips: int = Field(ge=2, description="number of clips; a swap needs at least two audio events")
    seed: int | None = Field(None, description="synth seed; None = the recipe's seed")
    test_fraction: float = Field(0.25, ge=0, lt=1, description="every 1/f-th clip gets split=test")


class TransitionTimesInput(_Section):
    """Oops-style ``transition_times.json`` (video name -> {t: [...], n_notfound, rel_t, len})."""

    file: str
    videos: str | None = Field(None, description="folder holding <name>.mp4; default: the JSON's folder")
    audio_event: str = Field("", description="audio event text for every clip (Oops has no audio labels)")
    visual_event: str = Field("", description="visual event text for every clip")


class SpectrogramMCQInput(_Section):
    """The spectrogram multiple-choice benchmark built into ``<data dir>/spectrogram_mcq/`` (items.jsonl, wavs,
    images): its train split feeds ``sft: {spectrogram_mcq: N}``, its test split the ``spectrogram_mcq`` eval suite."""

    words: int = Field(4068, ge=8, description="lexicon words, most frequent first (4,068 = the paper's benchmark)")
    folder: str | None = Field(None, description="build here (relative to the repository root) instead of "
                               "<data dir>/spectrogram_mcq, e.g. one copy shared by a recipe and its ablations")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of option sets held out (split by word)")
    workers: int = Field(2, ge=1, description="rendering processes")
    distractors: Literal["groups", "nearest"] = Field(
        "groups", description="groups: option sets of four close words, each the answer once; nearest: each "
                              "answer's distractors among its closest words by phonemic edit distance (the paper's)")

    def items_path(self, data_dir: str | Path) -> Path:
        """``items.jsonl`` of this benchmark for a recipe whose data folder is ``data_dir`` (``data/<recipe>``):
        where ``data_builders build`` writes it and where the ``spectrogram_mcq`` suite looks by default."""
        folder = Path(data_dir) / "spectrogram_mcq" if self.folder is None else REPO_ROOT / self.folder
        return folder / "items.jsonl"


class ShiftSettings(_Section):
    """How Shift(Δ) offsets are drawn: |Δ| uniform within a band chosen uniformly, sign from ``signs``."""

    # The released training data used |Δ| in [1.8, 2.5] s (thud.md); small bands teach fine sync but are harder.
    bands: list[tuple[float, float]] = Field(default_factory=lambda: [(1.8, 2.5)], min_length=1,
                                             description="[low, high] ranges of |Δ| in seconds")
    signs: Literal["both", "delay", "early"] = "both"
    step: float = Field(0.1, gt=0, description="offsets are rounded to this (seconds), so answers state them exactly")
    margin: float = Field(0.2, ge=0, description="the shifted sound onset must stay this far inside the clip")

    @model_validator(mode="after")
    def _check(self) -> "ShiftSettings":
        for lo, hi in self.bands:
            if not 0 < lo <= hi:
                raise ValueError(f"bands: [{lo}, {hi}] must satisfy 0 < low <= high")
        return self


class DataSection(_Section):
    """Inputs, intervention ranges, per-source counts and the test split (see module docstring)."""

    annotations: list[str] = Field(default_factory=list, description="annotation JSONL files (contracts.md)")
    transition_times: list[TransitionTimesInput] = Field(default_factory=list)
    synth: SynthInput | None = None
    finevideo: list[str] = Field(default_factory=list,
                                 description="FineVideo arrow/parquet shards or folders of <id>.mp4 + <id>.json")
    llava_video: list[str] = Field(default_factory=list, description="JSONL files of {prompt, chosen, rejected, video}")
    spectrogram_mcq: SpectrogramMCQInput | None = None
    shift: ShiftSettings = ShiftSettings()
    sft: dict[SourceName, int] = Field(default_factory=dict, description="exact SFT sample count per source")
    dpo: dict[SourceName, int] = Field(default_factory=dict, description="exact DPO pair count per source")
    test_fraction: float = Field(0.2, ge=0, lt=1,
                                 description="share of clips held out when an annotation has no 'split' field")

    @model_validator(mode="after")
    def _check(self) -> "DataSection":
        for part in ("sft", "dpo"):
            for name, n in getattr(self, part).items():
                if n < 0:
                    raise ValueError(f"{part}.{name}: a count cannot be negative")
        wanted = {k for part in (self.sft, self.dpo) for k, n in part.items() if n > 0}
        has_clips = bool(self.annotations or self.transition_times or self.synth)
        if wanted & set(CLIP_SOURCES) and not has_clips:
            raise ValueError(f"sources {sorted(wanted & set(CLIP_SOURCES))} need clips: set annotations, "
                             "transition_times or synth")
        if wanted & set(FINEVIDEO_SOURCES) and not self.finevideo:
            raise ValueError(f"sources {sorted(wanted & set(FINEVIDEO_SOURCES))} need finevideo inputs")
        if "llava_video" in wanted and not self.llava_video:
            raise ValueError("source llava_video needs llava_video JSONL inputs")
        if "spectrogram_mcq" in wanted and self.spectrogram_mcq is None:
            raise ValueError("source spectrogram_mcq needs the spectrogram_mcq input (e.g. spectrogram_mcq: "
                             "{words: 4068})")
        if self.dpo.get("spectrogram_mcq"):
            raise ValueError("dpo.spectrogram_mcq: the spectrogram benchmark gives SFT samples only (spectrogram_mcq.md"
                             " finetunes with LoRA SFT); move the count to sft")
        sft = {k for k, n in self.sft.items() if n > 0}
        if sft & set(IMAGE_SOURCES) and sft - set(IMAGE_SOURCES):
            raise ValueError(f"sft: image rows (spectrogram_mcq) and clip rows ({sorted(sft - set(IMAGE_SOURCES))}) "
                             "cannot share one SFT set (one collator per set); use separate recipes")
        return self
