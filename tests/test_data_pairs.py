"""Interventions on waveforms, offset drawing, answer templates and the pair-builder registry."""

from __future__ import annotations

import numpy as np
import pytest

from _data_media import labels
from data_builders.annotations import ClipAnnotation
from data_builders.answers import CLIP_PROMPTS, TEMPLATES, ClipFacts, answer, clip_prompt
from data_builders.interventions import Intervention, InterventionError, apply_intervention, shift_samples
from data_builders.pairs import PAIR_BUILDERS, BuildInputs, Clip, draw_offset, feasible_ranges, register
from recipes.data import ShiftSettings

SR = 16000


@pytest.mark.parametrize("offset", [0.5, -0.5, 1.23456, -0.0001])
def test_shift_moves_by_exactly_round_delta_sr_with_the_sign(offset):
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(SR * 3).astype(np.float32)
    out = apply_intervention(audio, Intervention(kind="shift", offset=offset), SR)
    k = round(offset * SR)
    assert shift_samples(offset, SR) == k and out.size == audio.size
    if k > 0:  # delayed: silence first, then the original from its start
        assert np.all(out[:k] == 0) and np.array_equal(out[k:], audio[:-k])
    elif k < 0:  # early: the head is dropped, silence at the end
        assert np.array_equal(out[: k], audio[-k:]) and np.all(out[k:] == 0)
    else:
        assert np.array_equal(out, audio)


def test_shift_as_long_as_the_clip_is_refused():
    with pytest.raises(InterventionError):
        apply_intervention(np.ones(SR, np.float32), Intervention(kind="shift", offset=1.0), SR)


def test_mute_is_silent_and_swap_takes_the_donor_cut_or_padded():
    audio = np.ones(1000, np.float32)
    assert not np.any(apply_intervention(audio, Intervention(kind="mute"), SR))
    spec = Intervention(kind="swap", donor="d", donor_video="d.mp4")
    long, short = np.arange(1500, dtype=np.float32), np.arange(1, 601, dtype=np.float32)
    assert np.array_equal(apply_intervention(audio, spec, SR, long), long[:1000])
    got = apply_intervention(audio, spec, SR, short)
    assert got.size == 1000 and np.array_equal(got[:600], short) and not np.any(got[600:])


def _clip(cid: str, t: float, duration: float, cls: str = "ball") -> Clip:
    return Clip(ann=ClipAnnotation(id=cid, video=f"{cid}.mp4", duration=duration, t_visual=t, t_audio=t,
                                   audio_event=f"{cls} sound", visual_event="it falls", object_class=cls),
                video=f"/x/{cid}.mp4", duration=duration)


def test_offsets_come_from_the_bands_both_signs_inside_the_clip_and_seeded():
    shift = ShiftSettings(bands=[(0.5, 1.0), (2.0, 2.5)], step=0.1, margin=0.2)
    clip = _clip("c", 3.0, 6.0)
    draws = [draw_offset(shift, clip, np.random.default_rng([7, i])) for i in range(300)]
    assert draws == [draw_offset(shift, clip, np.random.default_rng([7, i])) for i in range(300)]
    mags = np.abs(draws)
    assert all((0.5 - 1e-9 <= m <= 1.0 + 1e-9) or (2.0 - 1e-9 <= m <= 2.5 + 1e-9) for m in mags)
    assert min(draws) < 0 < max(draws) and np.allclose(np.round(mags, 1), mags)
    # sound at 5.5 s of a 6 s clip: no room for a delay, early shifts only; a 0.4 s clip fits nothing
    late = _clip("l", 5.5, 6.0)
    assert set(feasible_ranges(shift, 5.5, 6.0)) == {-1}
    assert all(draw_offset(shift, late, np.random.default_rng(i), prefer=1) < 0 for i in range(20))
    assert draw_offset(shift, _clip("s", 0.2, 0.4), np.random.default_rng(0)) is None


def test_every_answer_type_has_five_phrasings_that_state_their_label():
    facts = ClipFacts("a ball falls", "a thud", 2.5, 2.5)
    expect = {"synced": "synced", "delayed": "delayed", "early": "early", "silent": "silent",
              "mismatched": "mismatched", "false_match": "synced"}
    assert set(TEMPLATES) == set(expect) and len(CLIP_PROMPTS) >= 5
    for kind, templates in TEMPLATES.items():
        assert len(set(templates)) >= 5, kind
        offset = {"delayed": 2.1, "early": -2.1}.get(kind, 0.0)
        texts = set()
        for i in range(60):
            text = answer(kind, facts, np.random.default_rng(i), offset=offset, heard_event="a clink")
            assert labels(text) == {expect[kind]}, text
            texts.add(text)
        assert len(texts) >= 5, kind


def test_delayed_answer_states_where_and_how_late():
    facts = ClipFacts("a ball falls", "a thud", 2.5, 2.5)
    for i in range(20):
        text = answer("delayed", facts, np.random.default_rng(i), offset=2.1)
        assert "4.6" in text and "2.1" in text and "2.5" in text  # the worked example of data_builders/answers.py
    with pytest.raises(ValueError):
        answer("delayed", facts, np.random.default_rng(0), offset=-1.0)


def test_prompt_depends_on_clip_and_seed_only():
    assert clip_prompt("a", 0) == clip_prompt("a", 0)
    assert len({clip_prompt(f"c{i}", 0) for i in range(50)}) >= 5


def test_registry_refuses_a_duplicate_name_and_builds_exact_counts():
    with pytest.raises(ValueError, match="already registered"):
        register("ctp")(lambda inputs, n, rng: [])
    assert {"ctp", "orig_sync", "mute", "swap", "fv_d", "fv_a_l", "llava_video"} <= set(PAIR_BUILDERS)
    inputs = BuildInputs(clips=[_clip("a", 2.0, 5.0, "ball"), _clip("b", 2.5, 5.0, "can")],
                         shift=ShiftSettings(bands=[(0.5, 1.5)]))
    for name in ("ctp", "orig_sync", "mute", "swap"):
        pairs = PAIR_BUILDERS[name](inputs, 7, np.random.default_rng(0))
        assert len(pairs) == 7 and len({p.id for p in pairs}) == 7
    swaps = PAIR_BUILDERS["swap"](inputs, 4, np.random.default_rng(0))
    assert all(p.chosen_intervention.donor != p.source_id for p in swaps)
