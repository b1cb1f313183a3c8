"""Thud items: held-out source clips x conditions (original, shift, mute, swap), and the VGGSoundSync-style
out-of-distribution set.

An item names a clip and an :class:`~data_builders.interventions.Intervention`; the intervention is applied to the
decoded waveform in memory when the item is evaluated, so every condition of a clip shows the same pixels.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ConfigDict

from data_builders.annotations import AnnotatedClip, is_swap_donor, read_annotations, read_jsonl_models
from data_builders.interventions import Intervention, shift_intervention
from data_builders.pairs import shift_fits
from recipes.data import ShiftSettings

# Offsets covering every |Δ| band of "When Vision Speaks for Sound" (Figure 5), both signs: (0,0.5], (0.5,1],
# (1,2], (2,inf).
DEFAULT_OFFSETS: tuple[float, ...] = (0.3, -0.3, 0.8, -0.8, 1.5, -1.5, 2.2, -2.2)
# The training margin (recipe data.shift.margin) unless the suite is told otherwise; the runner passes the recipe's.
DEFAULT_MARGIN: float = ShiftSettings.model_fields["margin"].default


@dataclass(frozen=True)
class ThudItem:
    """One evaluated clip version. ``item_id`` never enters a prompt; it keys the cache and the prediction row."""

    item_id: str
    source_id: str
    video: Path
    condition: str  # original | shift | mute | swap
    intervention: Intervention
    band: str | None = None  # out-of-distribution set only
    offset: float | None = None  # seconds, > 0 = audio delayed; shift and sync-set items

    def model_offset(self) -> float | None:
        """The offset the prediction row records: only for shifted conditions."""
        return self.offset if self.condition == "shift" else None


def held_out_clips(annotations: str | Path, limit: int | None = None, split: str = "test") -> list[AnnotatedClip]:
    """Clips of an annotation JSONL, kept to ``split`` (held-out ``"test"`` by default) when the file has split fields.

    ``split="train"`` asks the same questions about training clips: how a training recipe is tuned without ever
    reading its held-out clips.
    Raises:
        FileNotFoundError / AnnotationError: missing file or a bad record.
        ValueError: no clip of that split in the file.
    """
    clips = read_annotations(annotations)
    if any(c.record.split is not None for c in clips):
        clips = [c for c in clips if c.record.split == split]
    if not clips:
        raise ValueError(f"{annotations}: no clip with split: {split} to evaluate")
    clips.sort(key=lambda c: c.record.id)
    return clips[:limit] if limit else clips


@dataclass
class ItemPlan:
    """The items of a Thud run and what could not be asked: ``dropped[kind]`` lists the source ids that got no
    shift (every offset would push the sound out of the clip) or no swap (no donor of another sound category)."""

    items: list[ThudItem]
    dropped: dict[str, list[str]] = field(default_factory=lambda: {"shift": [], "swap": []})

    def summary(self) -> dict:
        """Counts for results.json and the report: items per condition, shifts per offset, dropped per kind."""
        shifts = Counter(f"{i.offset:+g}" for i in self.items if i.condition == "shift")
        return {"items": dict(Counter(i.condition for i in self.items)),
                "shift_offsets": dict(sorted(shifts.items(), key=lambda kv: float(kv[0]))),
                "dropped": {k: len(v) for k, v in self.dropped.items()},
                "dropped_ids": {k: v for k, v in self.dropped.items() if v}}


def _pick_offsets(clip: AnnotatedClip, offsets: Sequence[float], used: Counter, want: int, margin: float,
                  rotation: int) -> list[float]:
    """Up to ``want`` offsets that fit ``clip`` (the training margin rule), least-used first so the run stays
    balanced across bands and signs when short clips rule some offsets out; ties go round-robin (``rotation``)."""
    rec = clip.record
    order = [float(offsets[(rotation + j) % len(offsets)]) for j in range(len(offsets))]
    fitting = [o for o in order if shift_fits(o, rec.t_audio, rec.duration, margin)]
    fitting.sort(key=lambda o: used[o])  # stable: equal counts keep the rotation order
    return fitting[:want]


def plan_items(clips: Sequence[AnnotatedClip], offsets: Sequence[float] = DEFAULT_OFFSETS, shifts_per_clip: int = 1,
               seed: int = 0, conditions: Sequence[str] = ("shift", "mute", "swap"),
               margin: float = DEFAULT_MARGIN, shift_gap: str = "silence") -> ItemPlan:
    """Every condition of every clip: the original, ``shifts_per_clip`` shifts, a mute and a swap.

    ``shift_gap``: what fills the stretch a shift empties (:class:`~data_builders.interventions.Intervention`'s
    ``gap``; ``silence`` leaves it unset, so the shifts' prediction keys stay what they were).

    Shifts keep the shifted sound onset ``margin`` seconds inside the clip, as training pairs do
    (:func:`~data_builders.pairs.shift_fits`); a clip too short for every offset gets no shift and is counted in
    ``dropped``. Offsets are dealt least-used first from a seeded rotation, so every band and sign is asked about
    equally often as far as the clips allow. The swap donor is a seeded choice among clips that may donate
    (:func:`~data_builders.annotations.is_swap_donor`: an audio event of another category); a clip without one gets
    no swap and is counted.
    """
    rng = random.Random(seed)
    start = rng.randrange(len(offsets)) if offsets else 0
    plan = ItemPlan(items=[])
    used: Counter = Counter()
    for k, clip in enumerate(clips):
        rec = clip.record
        plan.items.append(ThudItem(f"{rec.id}|original", rec.id, clip.path, "original", Intervention()))
        if "shift" in conditions and offsets:
            picked = _pick_offsets(clip, offsets, used, shifts_per_clip, margin, start + k * shifts_per_clip)
            if not picked:
                plan.dropped["shift"].append(rec.id)
            for off in picked:
                used[off] += 1
                plan.items.append(ThudItem(f"{rec.id}|shift|{off:+.3f}", rec.id, clip.path, "shift",
                                           shift_intervention(off, shift_gap), offset=off))
        if "mute" in conditions:
            plan.items.append(ThudItem(f"{rec.id}|mute", rec.id, clip.path, "mute", Intervention(kind="mute")))
        if "swap" in conditions:
            donors = [d for d in clips if is_swap_donor(d.record, rec)]
            if not donors:
                plan.dropped["swap"].append(rec.id)
                continue
            donor = random.Random(f"{seed}|swap|{rec.id}").choice(donors)
            plan.items.append(ThudItem(f"{rec.id}|swap|{donor.record.id}", rec.id, clip.path, "swap",
                                       Intervention(kind="swap", donor=donor.record.id, donor_video=str(donor.path))))
    return plan


def build_items(clips: Sequence[AnnotatedClip], offsets: Sequence[float] = DEFAULT_OFFSETS, shifts_per_clip: int = 1,
                seed: int = 0, conditions: Sequence[str] = ("shift", "mute", "swap"),
                margin: float = DEFAULT_MARGIN) -> list[ThudItem]:
    """The items of :func:`plan_items` (without its dropped counts)."""
    return plan_items(clips, offsets, shifts_per_clip, seed, conditions, margin).items


class SyncRecord(BaseModel):
    """One line of a VGGSoundSync-style set."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    video: str
    offset: float  # seconds, > 0 = audio delayed
    band: str | int | float = "unbanded"
    id: str | None = None


def read_sync_set(path: str | Path) -> list[ThudItem]:
    """VGGSoundSync-style JSONL, one ``{"video", "offset", "band"}`` per line (paths relative to the file).

    The clip's track is taken as it is (the offset is already in the file), so the item's intervention is the
    original; the offset travels in the prediction row. Raises ValueError naming the line of a bad record.
    """
    path = Path(path)
    items = []
    for _, rec in read_jsonl_models(path, SyncRecord, "sync set"):
        video = Path(rec.video) if Path(rec.video).is_absolute() else path.parent / rec.video
        sid = rec.id or video.stem
        cond = "shift" if rec.offset else "original"
        # The file's track already carries the offset (same sign convention as the interventions: > 0 = audio delayed).
        items.append(ThudItem(f"sync|{sid}|{rec.offset:+.3f}", sid, video, cond, Intervention(),
                              band=str(rec.band), offset=rec.offset or None))
    return items
