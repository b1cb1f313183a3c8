"""The questions of the existing closed-set suites as :class:`eval.conditions.ConditionItem` records, so Thud's
closed set and the spectrogram benchmark's audio questions run under the same input conditions as ``audio_mcq``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from eval.conditions import ConditionItem


def thud_items(items: Sequence, media, seed: int) -> list[ConditionItem]:
    """Every closed-set question of the Thud items (each dimension its condition answers), with the options that
    count as right under Thud's correctness rule; the audio shown is the item's intervened track."""
    from data_builders.interventions import apply_intervention
    from data_builders.media import load_audio, load_clip, probe_duration
    from eval.thud.prompts import closed_set_question
    from eval.thud.records import PredictionRow, is_correct
    from eval.thud.suite import DIMS_OF, item_inputs

    clip = lru_cache(maxsize=4)(lambda path: load_clip(path, media))

    def load(item):
        c = clip(item.video)
        donor = None
        if item.intervention.kind == "swap":
            donor, _ = load_audio(item.intervention.donor_video, media.sample_rate,
                                  max_seconds=min(c.duration, media.max_clip_seconds) or None)
        return c.frames, apply_intervention(c.audio, item.intervention, c.sample_rate, donor)

    out = []
    for item in items:
        duration = min(probe_duration(item.video), media.max_clip_seconds)
        for dim in DIMS_OF[item.condition]:
            q = closed_set_question(item.source_id, dim, seed)
            right = frozenset(k for k, label in enumerate(q.order) if is_correct(PredictionRow(
                source_id=item.source_id, dimension=dim, condition=item.condition, offset=item.model_offset(),
                label=label)))
            out.append(ConditionItem(f"{item.item_id}|{dim}", q.prompt, tuple(q.options), right, duration,
                                     lambda item=item: load(item), item_inputs(item)))
    return out


def spectrogram_items(items: Sequence, root: Path, media) -> list[ConditionItem]:
    """The benchmark's audio questions (the spoken word instead of its picture), both option kinds."""
    from data_builders.media import probe_duration
    from data_builders.spectrogram_mcq import prompt
    from eval.context import decoded_audio, media_identity

    out = []
    for item in items:
        path = root / item.audio
        duration = min(probe_duration(path), media.max_clip_seconds)
        for kind in ("graphemic", "phonemic"):
            options = tuple(getattr(item.options, kind))
            out.append(ConditionItem(f"{item.id}|{kind}", prompt(list(options), kind, "audio"), options,
                                     frozenset({item.answer}), duration,
                                     lambda path=path: (None, decoded_audio(path, media.sample_rate)),
                                     media_identity(path)))
    return out
