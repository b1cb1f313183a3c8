"""The recipe's ``data`` section: where the inputs are, how interventions are drawn, exact counts per source for SFT
and DPO, and the held-out test split. Read by ``python -m data_builders build`` (:mod:`data_builders.build`).

Input paths are relative to the recipe file's folder, else to the project root (``recipes.paths``: the current
directory unless ``--root``/``HARKEN_ROOT`` says otherwise); absolute paths are taken as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recipes.paths import is_inside, project_root

# Training-data source names (docs/data.md). ``self_sampled`` is not here: the trainer builds it from the SFT set.
# ``spectrogram_mcq`` is the image source of the spectrogram benchmark's finetuning (spectrogram_mcq.md).
# ``perception`` asks about one modality at a time (which object is seen, which sound is heard, when each happens);
# ``perception_what`` only which object and which sound (a random model learns them alone, not among all questions).
SourceName = Literal["ctp", "orig_sync", "mute", "swap", "fv_d", "fv_a_l", "fv_t", "fv_c", "llava_video",
                     "spectrogram_mcq", "perception", "perception_what"]
# Built from annotated clips (Oops / synth / transitions).
CLIP_SOURCES = ("ctp", "orig_sync", "mute", "swap", "perception", "perception_what")
# FineVideo's four instruction types: segment description, audio-visual multiple choice (long answer), temporal
# localisation of a line of speech, and what is heard while a given activity is shown.
FINEVIDEO_SOURCES = ("fv_d", "fv_a_l", "fv_t", "fv_c")
IMAGE_SOURCES = ("spectrogram_mcq",)  # rows of images + text, no clip: a dataset holds these or clip rows, not both


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SynthInput(_Section):
    """Synthetic impact clips generated into ``<data dir>/synth/`` (the offline stand-in for Oops)."""

    clips: int = Field(ge=2, description="number of clips; a swap needs at least two audio events")
    seed: int | None = Field(None, description="synth seed; None = the recipe's seed")
    test_fraction: float = Field(0.25, ge=0, lt=1, description="every 1/f-th clip gets split=test")
    world: Literal["demo", "listen"] = Field("demo", description="clip timing (data_builders.synth.WORLDS): demo = "
                                             "3-6 s clips; listen = 5 s clips whose impact stays audible when "
                                             "shifted or swapped in")


class TransitionTimesInput(_Section):
    """Oops-style ``transition_times.json`` (video name -> {t: [...], n_notfound, rel_t, len})."""

    file: str = Field(description="the transition_times.json file")
    videos: str | None = Field(None, description="folder holding <name>.mp4; default: the JSON's folder")
    audio_event: str = Field("", description="audio event text for every clip (Oops has no audio labels)")
    visual_event: str = Field("", description="visual event text for every clip")


class OopsInput(_Section):
    """An Oops download as published: ``root`` holds ``annotations/`` (transition_times.json,
    heldout_transition_times.json, train.txt, val.txt, *_filtered.txt) and ``oops_video/{train,val}/``."""

    root: str
    events: str | None = Field(None, description="JSONL of per-clip event texts keyed by id (e.g. the Thud "
                               "annotations): visual_event, audio_event and any other annotation field")
    filtered: bool = Field(True, description="keep only the clips of the official *_filtered.txt lists")
    heldout: bool = Field(True, description="also read heldout_transition_times.json for clips the main file lacks")
    audio_event: str = Field("", description="text for clips the events file lacks (every clip needs one)")
    visual_event: str = Field("", description="text for clips the events file lacks")


class LlavaInput(_Section):
    """A video preference JSONL (LLaVA-Hound ``sft_dpo_17k.jsonl``: id, prompt, answer, chosen, rejected, scores,
    video) and the folder its ``video`` names are relative to (mp4 files or folders of JPEG frames)."""

    file: str
    video_folder: str | None = Field(None, description="default: the JSONL's own folder")


class SpectrogramMCQInput(_Section):
    """The spectrogram multiple-choice benchmark built into ``<data dir>/spectrogram_mcq/`` (items.jsonl, wavs,
    images): its train split feeds ``sft: {spectrogram_mcq: N}``, its test split the ``spectrogram_mcq`` eval suite."""

    words: int = Field(4068, ge=8, description="lexicon words, most frequent first (4,068 = the paper's benchmark)")
    folder: str | None = Field(None, description="build here (relative to the project root) instead of "
                               "<data dir>/spectrogram_mcq, e.g. one copy shared by a recipe and its ablations")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of option sets held out (split by word)")
    workers: int = Field(2, ge=1, description="rendering processes")
    distractors: Literal["groups", "nearest"] = Field(
        "groups", description="groups: option sets of four close words, each the answer once; nearest: each "
                              "answer's distractors among its closest words by phonemic edit distance (the paper's)")

    def items_path(self, data_dir: str | Path) -> Path:
        """``items.jsonl`` of this benchmark for a recipe whose data folder is ``data_dir`` (``data/<recipe>``):
        where ``data_builders build`` writes it and where the ``spectrogram_mcq`` suite looks by default."""
        folder = Path(data_dir) / "spectrogram_mcq" if self.folder is None else project_root() / self.folder
        return folder / "items.jsonl"

    @field_validator("folder")
    @classmethod
    def _inside_root(cls, folder: str | None) -> str | None:
        # The build writes into this folder: it must stay under the project root whatever the recipe says.
        if folder is not None and (Path(folder).is_absolute() or not is_inside(Path("/r") / folder, "/r")):
            raise ValueError(f"{folder!r}: give a folder relative to the project root, without '..'")
        return folder


class ShiftSettings(_Section):
    """How Shift(Δ) offsets are drawn: |Δ| uniform within a band chosen uniformly, sign from ``signs``."""

    # The released training data used |Δ| in [1.8, 2.5] s ("When Vision Speaks for Sound"); small bands teach fine sync but are harder.
    bands: list[tuple[float, float]] = Field(default_factory=lambda: [(1.8, 2.5)], min_length=1,
                                             description="[low, high] ranges of |Δ| in seconds")
    signs: Literal["both", "delay", "early"] = Field("both", description="delayed and early shifts, or one "
                                                    "direction only")
    step: float = Field(0.1, gt=0, description="offsets are rounded to this (seconds), so answers state them exactly")
    margin: float = Field(0.2, ge=0, description="the shifted sound onset must stay this far inside the clip")
    gap: Literal["silence", "room_tone"] = Field(
        "silence", description="what fills the stretch a shift empties at one end of the track: silence (the Thud "
                               "paper's Shift; digital silence tells a shifted track without the picture) or the "
                               "clip's own quiet (room_tone), so that only the timing tells")

    @model_validator(mode="after")
    def _check(self) -> "ShiftSettings":
        for lo, hi in self.bands:
            if not 0 < lo <= hi:
                raise ValueError(f"bands: [{lo}, {hi}] must satisfy 0 < low <= high")
        return self


class DataSection(_Section):
    """Inputs, intervention ranges, per-source counts and the test split of the built data."""

    annotations: list[str] = Field(default_factory=list, description="annotation JSONL files, one clip per "
                                 "line with its event times (docs/formats.md)")
    media_roots: list[str] = Field(default_factory=list, description="folders outside an annotation file's folder "
                                   "that its video paths may point into (absolute, or relative to the recipe)")
    transition_times: list[TransitionTimesInput] = Field(default_factory=list)
    synth: SynthInput | None = None
    finevideo: list[str] = Field(default_factory=list,
                                 description="FineVideo parquet/arrow shards, globs or folders of them, or the dataset "
                                 "card's export (a folder with videos/ and metadata/)")
    oops: list[OopsInput] = Field(default_factory=list, description="Oops downloads read as published")
    llava_video: list[str | LlavaInput] = Field(default_factory=list, description="preference JSONL files: a path, "
                                                "or {file, video_folder}")
    spectrogram_mcq: SpectrogramMCQInput | None = None
    shift: ShiftSettings = ShiftSettings()
    sft: dict[SourceName, int] = Field(default_factory=dict, description="exact SFT sample count per source")
    dpo: dict[SourceName, int] = Field(default_factory=dict, description="exact DPO pair count per source")
    test_fraction: float = Field(0.2, ge=0, lt=1,
                                 description="share of clips held out when an annotation has no 'split' field")
    questions: Literal["free_form", "closed_set"] = Field(
        "free_form", description="how ctp/orig_sync/mute/swap ask and answer: free_form = an open question and a "
        "written answer stating the numbers; closed_set = the Thud multiple-choice question of one dimension "
        "answered with the text of one option (what the closed-set eval scores)")
    audio_contrast: float = Field(
        0.0, ge=0, le=1, description="share of the ctp, mute and swap pairs whose two sides give the same answer and "
        "differ in their audio: the chosen side hears the track the answer is right for, the rejected side a track "
        "it is wrong for (an intervened pair's original track; an original pair's track shifted, muted or swapped as "
        "its wrong answer claims). The rest contrast two answers on one track. orig_sync is never changed: it is "
        "the control without counterfactual audio")

    @model_validator(mode="after")
    def _check(self) -> "DataSection":
        for part in ("sft", "dpo"):
            for name, n in getattr(self, part).items():
                if n < 0:
                    raise ValueError(f"{part}.{name}: a count cannot be negative")
        wanted = {k for part in (self.sft, self.dpo) for k, n in part.items() if n > 0}
        has_clips = bool(self.annotations or self.transition_times or self.synth or self.oops)
        if wanted & set(CLIP_SOURCES) and not has_clips:
            raise ValueError(f"sources {sorted(wanted & set(CLIP_SOURCES))} need clips: set annotations, "
                             "oops, transition_times or synth")
        if wanted & set(FINEVIDEO_SOURCES) and not self.finevideo:
            raise ValueError(f"sources {sorted(wanted & set(FINEVIDEO_SOURCES))} need finevideo inputs")
        if "llava_video" in wanted and not self.llava_video:
            raise ValueError("source llava_video needs llava_video JSONL inputs")
        if "spectrogram_mcq" in wanted and self.spectrogram_mcq is None:
            raise ValueError("source spectrogram_mcq needs the spectrogram_mcq input (e.g. spectrogram_mcq: "
                             "{words: 4068})")
        if self.dpo.get("spectrogram_mcq"):
            raise ValueError("dpo.spectrogram_mcq: the spectrogram benchmark gives SFT samples only (its finetuning "
                             "is LoRA SFT); move the count to sft")
        sft = {k for k, n in self.sft.items() if n > 0}
        if sft & set(IMAGE_SOURCES) and sft - set(IMAGE_SOURCES):
            raise ValueError(f"sft: image rows (spectrogram_mcq) and clip rows ({sorted(sft - set(IMAGE_SOURCES))}) "
                             "cannot share one SFT set (one collator per set); use separate recipes")
        return self
