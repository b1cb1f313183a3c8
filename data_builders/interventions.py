"""Counterfactual audio interventions (the Shift, Mute and Swap of "When Vision Speaks for Sound"): typed specs
applied to the decoded waveform when a sample loads.

The video is never touched: every condition of a clip shows the same decoded pixels, and only the waveform handed
to the processor differs. Files with an intervened track are written only on request (``materialize``).

Sign convention: Shift(Δ) gives a'(t) = a(t − Δ); Δ > 0 delays the audio (heard after the visual event),
Δ < 0 makes it early. The clip keeps its length: a delay pads silence at the start and drops the tail; an early
shift drops the head and pads the tail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

Kind = Literal["original", "shift", "mute", "swap"]


class Intervention(BaseModel):
    """One condition of a clip. ``offset`` (seconds) and ``gap`` for shift only; ``donor``/``donor_video`` for swap
    only.

    ``donor_video`` is the donor clip's file, so a sample can be loaded without the donor's annotation. ``gap``:
    what fills the stretch a shift empties at one end of the track; unset, silence (the Thud paper's Shift);
    ``room_tone``, the clip's own quiet (:func:`fill_shift_gap`), so that only the timing tells.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind = "original"
    offset: float | None = None
    donor: str | None = None
    donor_video: str | None = None
    gap: Literal["room_tone"] | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> "Intervention":
        if self.kind == "shift":
            if self.offset is None or self.offset == 0:
                raise ValueError("a shift needs a non-zero 'offset' in seconds (> 0 delays the audio)")
        elif self.offset is not None or self.gap is not None:
            raise ValueError(f"'offset' and 'gap' are only for shift, not {self.kind}")
        if self.kind == "swap":
            if not self.donor or not self.donor_video:
                raise ValueError("a swap needs 'donor' (source id) and 'donor_video' (its file)")
        elif self.donor is not None or self.donor_video is not None:
            raise ValueError(f"'donor' is only for swap, not {self.kind}")
        return self

    def describe(self) -> str:
        """Short human-readable tag, e.g. ``shift(+2.10s)`` (for logs and file names, never for prompts)."""
        if self.kind == "shift":
            return f"shift({self.offset:+.2f}s{', room tone' if self.gap else ''})"
        if self.kind == "swap":
            return f"swap({self.donor})"
        return self.kind


ORIGINAL = Intervention()


def shift_intervention(offset: float, gap: str = "silence") -> Intervention:
    """Shift(``offset``) with the gap it leaves filled as ``gap`` says (``silence``, the default, leaves the field
    unset, so the specs and every key made from them stay what they were)."""
    return Intervention(kind="shift", offset=offset, gap=None if gap == "silence" else gap)


class InterventionError(ValueError):
    """An intervention that cannot be applied to this clip (e.g. a shift as long as the clip)."""


def shift_samples(offset: float, sample_rate: int) -> int:
    """Samples moved by a shift of ``offset`` seconds: exactly ``round(offset * sample_rate)``."""
    return int(round(offset * sample_rate))


def apply_intervention(audio: np.ndarray, spec: Intervention, sample_rate: int,
                       donor_audio: np.ndarray | None = None) -> np.ndarray:
    """Return the intervened copy of a mono waveform; the input is not modified and the length is kept.

    Args:
        audio: mono float waveform of the clip.
        spec: the intervention.
        sample_rate: samples per second of ``audio`` (and ``donor_audio``).
        donor_audio: the donor clip's waveform, required for swap.
    Raises:
        InterventionError: a shift of at least the clip's length, or a swap without donor audio.
    """
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.size
    if spec.kind == "original":
        return audio.copy()
    if spec.kind == "mute":
        return np.zeros_like(audio)
    if spec.kind == "shift":
        k = shift_samples(spec.offset, sample_rate)
        if abs(k) >= n:
            raise InterventionError(f"shift of {spec.offset:+.2f}s is not shorter than the clip ({n / sample_rate:.2f}s)")
        out = np.zeros_like(audio)
        if k > 0:
            out[k:] = audio[: n - k]
        else:
            out[: n + k] = audio[-k:]
        return fill_shift_gap(out, audio, spec.offset, sample_rate) if spec.gap == "room_tone" else out
    if donor_audio is None:
        raise InterventionError("swap needs the donor's audio")
    donor = np.asarray(donor_audio, dtype=np.float32)[:n]
    return np.pad(donor, (0, n - donor.size)) if donor.size < n else donor.copy()


def fill_shift_gap(shifted: np.ndarray, original: np.ndarray, offset: float, sample_rate: int,
                   window: float = 0.5) -> np.ndarray:
    """``shifted`` (``original`` moved by ``offset`` seconds, see :func:`apply_intervention`) with the gap the shift
    leaves at one end filled with the original track's own quietest ``window`` seconds, looped (its room tone).

    A shift leaves that gap as digital silence, which a real track never holds: a model can then tell a shifted
    track from the audio alone, without comparing the sound's time with the picture's. Filled, only the timing
    tells. The rest of the track is unchanged; the input is not modified.
    """
    k = shift_samples(offset, sample_rate)
    out = np.array(shifted, dtype=np.float32, copy=True)
    if k == 0 or original.size == 0:
        return out
    w = max(1, min(int(window * sample_rate), original.size))
    starts = range(0, original.size - w + 1, max(1, w // 4))
    quiet = min(starts, key=lambda i: float(np.square(original[i:i + w], dtype=np.float64).mean()))
    fill = np.resize(np.asarray(original[quiet:quiet + w], dtype=np.float32), min(abs(k), out.size))
    if k > 0:
        out[:fill.size] = fill
    else:
        out[out.size - fill.size:] = fill
    return out


def intervened_audio(video: str | Path, spec: Intervention, sample_rate: int, max_seconds: float | None = None,
                     base_dir: str | Path | None = None, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Decode a clip's track with the media loader and apply ``spec`` (decoding the donor for a swap).

    Relative paths resolve against ``base_dir`` when given. ``start``/``end`` (seconds; FineVideo segments) return
    only that segment's samples, cut after the intervention; ``max_seconds`` then counts from ``start``.
    """
    if start > 0 or end is not None:
        stop = end if max_seconds is None else min(end if end is not None else np.inf, start + max_seconds)
        whole = intervened_audio(video, spec, sample_rate, None if stop == np.inf else stop, base_dir)
        return whole[int(round(start * sample_rate)): None if stop == np.inf or stop is None
                     else int(round(stop * sample_rate))]
    from data_builders.media import load_audio

    def _p(p: str | Path) -> Path:
        p = Path(p)
        return p if base_dir is None or p.is_absolute() else Path(base_dir) / p

    # A clip without a track (a silent mp4 or a frame folder of an external preference set) is heard as silence;
    # builds quarantine annotated clips without sound before they get here.
    audio, _ = load_audio(_p(video), sample_rate, max_seconds=max_seconds, missing="silence")
    donor = None
    if spec.kind == "swap":
        donor, _ = load_audio(_p(spec.donor_video), sample_rate, max_seconds=max_seconds, missing="silence")
    return apply_intervention(audio, spec, sample_rate, donor)
