"""Thud items: held-out source clips x conditions (thud.md), and the VGGSoundSync-style out-of-distribution set.

An item names a clip and an :class:`~data_builders.interventions.Intervention`; the intervention is applied to the
decoded waveform in memory when the item is evaluated, so every condition of a clip shows the same pixels.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data_builders.annotations import AnnotatedClip, read_annotations
from data_builders.interventions import Intervention

# Offsets covering every band of thud.md Figure 5, both signs: (0,0.5], (0.5,1], (1,2], (2,inf).
DEFAULT_OFFSETS: tuple[float, ...] = (0.3, -0.3, 0.8, -0.8, 1.5, -1.5, 2.2, -2.2)


@dataclass(frozen=True)
class ThudItem:
    """One evaluated clip version. ``item_id`` never enters a prompt; it keys the cache and the prediction row."""

    item_id: str
    source_id: str
    video: Path
    condition: str  # original | shift | mute | swap
    intervention: Intervention
    band: str | None = None  # out-of-distribution set only
    offset: float | None = None  # seconds, > 0 = audio delayed (thud.md); shift and sync-set items

    def model_offset(self) -> float | None:
        """The offset the prediction row records: only for shifted conditions."""
        return self.offset if self.condition == "shift" else None


def held_out_clips(annotations: str | Path, limit: int | None = None) -> list[AnnotatedClip]:
    """Clips of an annotation JSONL, kept to ``split == "test"`` when the file has split fields.

    Raises:
        FileNotFoundError / AnnotationError: missing file or a bad record.
        ValueError: no held-out clip in the file.
    """
    clips = read_annotations(annotations)
    if any(c.record.split is not None for c in clips):
        clips = [c for c in clips if c.record.split == "test"]
    if not clips:
        raise ValueError(f"{annotations}: no held-out (split: test) clip to evaluate")
    clips.sort(key=lambda c: c.record.id)
    return clips[:limit] if limit else clips


def _sound_class(clip: AnnotatedClip) -> str:
    extra = clip.record.model_extra or {}
    return str(extra.get("object_class") or clip.record.audio_event or clip.record.id)


def build_items(clips: Sequence[AnnotatedClip], offsets: Sequence[float] = DEFAULT_OFFSETS, shifts_per_clip: int = 1,
                seed: int = 0, conditions: Sequence[str] = ("shift", "mute", "swap")) -> list[ThudItem]:
    """Every condition of every clip: the original, ``shifts_per_clip`` shifts, a mute and a swap.

    Shift offsets are dealt round-robin from a seeded rotation of ``offsets`` so that a set of
    ``len(offsets) / shifts_per_clip`` clips covers every band and sign; offsets not shorter than the clip are
    skipped. The swap donor is a seeded choice among clips with a different audio event (thud.md); a clip without
    such a donor gets no swap.
    """
    rng = random.Random(seed)
    start = rng.randrange(len(offsets)) if offsets else 0
    items: list[ThudItem] = []
    k = 0
    for clip in clips:
        rec = clip.record
        items.append(ThudItem(f"{rec.id}|original", rec.id, clip.path, "original", Intervention()))
        if "shift" in conditions and offsets:
            taken = 0
            for _ in range(len(offsets)):
                if taken == shifts_per_clip:
                    break
                off = float(offsets[(start + k) % len(offsets)])
                k += 1
                if abs(off) >= rec.duration:
                    continue
                items.append(ThudItem(f"{rec.id}|shift|{off:+.3f}", rec.id, clip.path, "shift",
                                      Intervention(kind="shift", offset=off), offset=off))
                taken += 1
        if "mute" in conditions:
            items.append(ThudItem(f"{rec.id}|mute", rec.id, clip.path, "mute", Intervention(kind="mute")))
        if "swap" in conditions:
            donors = [d for d in clips if _sound_class(d) != _sound_class(clip)]
            if donors:
                donor = random.Random(f"{seed}|swap|{rec.id}").choice(donors)
                items.append(ThudItem(f"{rec.id}|swap|{donor.record.id}", rec.id, clip.path, "swap",
                                      Intervention(kind="swap", donor=donor.record.id, donor_video=str(donor.path))))
    return items


def read_sync_set(path: str | Path) -> list[ThudItem]:
    """VGGSoundSync-style JSONL, one ``{"video", "offset", "band"}`` per line (paths relative to the file).

    The clip's track is taken as it is (the offset is already in the file), so the item's intervention is the
    original; the offset travels in the prediction row. Raises ValueError naming the line of a bad record.
    """
    path = Path(path)
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video, offset = Path(row["video"]), float(row["offset"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: a sync item needs 'video' and numeric 'offset' ({exc})") from exc
        video = video if video.is_absolute() else path.parent / video
        sid = str(row.get("id") or f"{video.stem}")
        cond = "shift" if offset else "original"
        # The file's track already carries the offset (same sign convention as thud.md: > 0 = audio delayed).
        items.append(ThudItem(f"sync|{sid}|{offset:+.3f}", sid, video, cond, Intervention(),
                              band=str(row.get("band", "unbanded")), offset=offset or None))
    return items
