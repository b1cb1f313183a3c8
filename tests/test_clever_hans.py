"""The pieces of the "Clever Hans" recipe: the listen world, closed-set and perception sources, stage branches and
source filters in the schema, and the run-level summary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from data_builders.annotations import read_annotations
from data_builders.pairs import CLOSED_SET_PLAN, BuildInputs, Clip, build_pairs
from eval.thud.prompts import OPTION_TEXT
from eval.thud.records import PredictionRow, is_correct
from recipes.data import ShiftSettings
from recipes.schema import RecipeError, load_recipe

LABEL_OF = {text: label for label, text in OPTION_TEXT.items()}


@pytest.fixture(scope="module")
def inputs(synth_dir) -> BuildInputs:
    clips = [Clip(ann=a.record, video=str(a.path), duration=a.record.duration)
             for a in read_annotations(synth_dir / "annotations.jsonl")]
    return BuildInputs(clips=clips, shift=ShiftSettings(bands=[(0.5, 1.5)]), seed=3, questions="closed_set")


def _condition(spec) -> str:
    return spec.kind


@pytest.mark.parametrize("source", sorted(CLOSED_SET_PLAN))
def test_closed_set_pairs_are_right_by_the_eval_own_rule(inputs, source):
    pairs = build_pairs(source, inputs, 24, np.random.default_rng(0))
    prompts: dict[tuple[str, str], set[str]] = {}
    conditions = []
    for p in pairs:
        assert p.chosen_intervention == p.rejected_intervention, "both sides hear the same clip"
        dim = p.meta["dimension"]
        cond = _condition(p.chosen_intervention)
        conditions.append(cond)
        offset = p.chosen_intervention.offset

        def row(text: str) -> PredictionRow:
            return PredictionRow(source_id=p.source_id, dimension=dim, condition=cond, offset=offset,
                                 label=LABEL_OF[text])

        assert is_correct(row(p.chosen)), (p.id, p.chosen)
        assert not is_correct(row(p.rejected)), (p.id, p.rejected)
        prompts.setdefault((p.source_id, dim), set()).add(p.prompt)
    assert all(len(v) == 1 for v in prompts.values()), "one question text per clip and dimension, whatever the audio"
    if source != "orig_sync":  # the question alone never tells the answer: originals are asked as often
        assert 0 < conditions.count("original") < len(conditions)
    else:
        assert set(conditions) == {"original"}


@pytest.mark.parametrize("source, asked", [
    ("perception", {"object", "impact_time", "sound", "sound_source", "sound_time"}),
    ("perception_what", {"object", "sound", "sound_source"})])
def test_perception_audio_answers_follow_the_track(inputs, source, asked):
    pairs = build_pairs(source, inputs, 64, np.random.default_rng(1))
    by_id = {c.id: c.ann for c in inputs.clips}
    aspects = set()
    for p in pairs:
        aspect, spec, ann = p.meta["aspect"], p.chosen_intervention, by_id[p.source_id]
        aspects.add(aspect)
        assert p.chosen != p.rejected
        if aspect == "object":
            assert ann.visual_event[:12].lower() in p.chosen.lower(), "the seen object ignores the audio"
        elif aspect in ("sound", "sound_source"):  # what is heard, as a sound or as the object heard falling
            field = "audio_event" if aspect == "sound" else "visual_event"
            heard = {"mute": None, "swap": getattr(by_id[spec.donor], field) if spec.donor else None}.get(
                spec.kind, getattr(ann, field))
            assert (heard or "silent").lower()[:12] in p.chosen.lower()
        elif aspect == "sound_time" and spec.kind == "shift":
            assert p.chosen == f"At about {ann.t_audio + spec.offset:.1f} s."
        elif aspect == "impact_time":
            assert p.chosen == f"At about {ann.t_visual:.1f} s."
    assert aspects == asked
    assert len({p.prompt for p in pairs}) == len(asked), "the question depends on the aspect only"
    assert {p.source for p in pairs} == {source} and all(p.id.startswith(source + "-") for p in pairs)


def test_listen_world_keeps_impacts_inside_every_clip():
    from data_builders.synth import GROUND_Y, OBJECT_CLASSES, make_clip

    for i in range(20):
        ann, frames, audio = make_clip(i, 5, world="listen")
        assert ann.duration == 5.0 and 1.1 <= ann.t_visual <= 3.2
        assert len(frames) == 125
        above = frames[0][:GROUND_Y]
        coloured = above[above.std(axis=2) > 0]  # above the ground, only the object has a colour: the sky is grey
        cls = next(c for c in OBJECT_CLASSES if c.name == ann.object_class)
        assert len(coloured) > 0 and (coloured == cls.color).all()


def test_start_from_must_name_an_earlier_enabled_stage():
    assert load_recipe("clever_hans").base_stage("control") == "natural_sft"
    assert load_recipe("clever_hans").base_stage("dpo") == "natural_sft"
    for override, words in [("stages.control.start_from=nope", "no stage named"),
                            ("stages.natural_sft.start_from=dpo", "comes after"),
                            ("stages.natural_sft.enabled=false", "disabled")]:
        with pytest.raises(RecipeError, match=words) as err:
            load_recipe("clever_hans", [override])
        assert err.value.key == "stages" and "start_from" in str(err.value)


def test_stage_sources_must_be_built():
    with pytest.raises(RecipeError, match="no rows in the built 'dpo' set"):
        load_recipe("clever_hans", ["stages.dpo.data.sources=[ctp, fv_d]"])


def test_summary_is_what_metrics_thud_prints(tmp_path, capsys):
    from eval.__main__ import main
    from eval.summary import target_figures, write_summary

    recipe = load_recipe("clever_hans")
    rng = np.random.default_rng(0)
    for stage, _ in recipe.active_stages():
        folder = tmp_path / stage / "checkpoint-5" / "eval" / "thud"
        folder.mkdir(parents=True)
        (tmp_path / stage / "checkpoint-5" / "trainer_state.json").write_text("{}")
        rows = []
        for i in range(8):
            for dim, cond, off in [("temporal_sync", "original", None), ("temporal_sync", "shift", 0.3 * (i + 1)),
                                   ("audio_existence", "original", None), ("audio_existence", "mute", None)]:
                label = str(rng.choice(["synced", "delayed", "silent"]))
                rows.append(dict(source_id=f"c{i}", dimension=dim, condition=cond, offset=off, label=label))
        (folder / "predictions_closed_set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = write_summary(tmp_path, recipe)
    summary = json.loads(Path(path).read_text())
    assert sorted(summary["branches"]) == sorted(n for n, _ in recipe.active_stages())
    assert main(["metrics", "thud", str(tmp_path / "dpo" / "checkpoint-5" / "eval" / "thud" /
                                        "predictions_closed_set.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out) == summary["branches"]["dpo"]
    assert (tmp_path / "summary.png").stat().st_size > 0
    fig = target_figures(summary["branches"]["dpo"])
    assert fig["min_original"] == min(summary["branches"]["dpo"][d]["accuracy_original"]
                                      for d in ("temporal_sync", "audio_existence"))


def test_a_branch_starts_from_the_stage_it_names(tiny_backbones, synth_dir, tmp_path):
    import _train_data as td
    from train.pipeline import run_recipe

    td.save(td.sft_records(synth_dir), tmp_path / "data" / "sft")
    td.save(td.dpo_records(synth_dir), tmp_path / "data" / "dpo")
    one = "max_steps: 1, learning_rate: 1.0e-3, batch_size: 2, save_steps: 1"
    path = td.write_recipe(tmp_path, "branches", f"""
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
media: {{fps: 1, max_frames: 4, max_pixels: 6272}}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, {one}}}
  dpo: {{kind: dpo, data: {{dataset: dpo}}, {one}}}
  control: {{kind: dpo, start_from: sft, data: {{dataset: dpo, sources: [ctp]}}, {one}}}
""")
    results = {r.stage: r for r in run_recipe(load_recipe(path), runs_root=tmp_path / "runs",
                                              data_root=tmp_path / "data", log=lambda _: None)}
    assert results["dpo"].base == results["sft"].weights
    assert results["control"].base == results["sft"].weights, "the branch starts from sft, not from dpo"
    assert results["control"].fingerprint != results["dpo"].fingerprint


@pytest.mark.parametrize("offset", [0.8, -1.5])
def test_quiet_gap_fills_only_what_a_shift_left_silent(offset):
    """The same shifted track, its silent gap filled with the clip's own quiet (the sync probe's second condition
    and Thud's ``shift_gap: room_tone``)."""
    from data_builders.interventions import Intervention, apply_intervention
    from data_builders.synth import make_clip
    from data_builders.interventions import fill_shift_gap

    _, _, audio = make_clip(0, 3, world="listen")
    sr = audio.size // 5  # the synthetic track's own rate: 5 s clips
    shifted = apply_intervention(audio, Intervention(kind="shift", offset=offset), sr)
    k = int(round(offset * sr))
    gap = slice(0, k) if k > 0 else slice(audio.size + k, audio.size)
    assert not shifted[gap].any(), "a shift leaves digital silence: the cue the probe takes away"
    filled = fill_shift_gap(shifted, audio, offset, sr)
    spec = Intervention(kind="shift", offset=offset, gap="room_tone")
    assert np.array_equal(apply_intervention(audio, spec, sr), filled), "the spec's gap is the same filling"
    with pytest.raises(ValueError, match="only for shift"):
        Intervention(kind="mute", gap="room_tone")
    rest = np.ones(audio.size, dtype=bool)
    rest[gap] = False
    assert np.array_equal(filled[rest], shifted[rest])
    assert np.count_nonzero(filled[gap]) > 0.9 * abs(k)
    quietest = np.sqrt(np.mean(np.square(filled[gap])))
    assert quietest <= np.sqrt(np.mean(np.square(audio))), "the gap is filled with quiet, not with the impact"


def test_room_tone_gap_reaches_every_shift_a_recipe_builds(inputs):
    """``data.shift.gap: room_tone`` puts the gap into every shifted pair's spec, so collators fill it as Thud does."""
    filled = dataclasses.replace(inputs, shift=inputs.shift.model_copy(update={"gap": "room_tone"}))
    for source in ("ctp", "perception"):
        pairs = build_pairs(source, filled, 48, np.random.default_rng(2))
        shifts = [p.chosen_intervention for p in pairs if p.chosen_intervention.kind == "shift"]
        assert shifts and all(s.gap == "room_tone" for s in shifts)
        plain = build_pairs(source, inputs, 48, np.random.default_rng(2))
        assert all(p.chosen_intervention.gap is None for p in plain)


@pytest.mark.parametrize("questions", ["closed_set", "free_form"])
@pytest.mark.parametrize("source", ["ctp", "mute", "swap"])
def test_audio_contrast_pairs_differ_in_their_audio_only(inputs, source, questions):
    """``data.audio_contrast``: the chosen answer on both sides, the rejected side hearing a track it is wrong for;
    the chosen sides are those of the plain build, and the share converted is the recipe's."""
    plain_inputs = dataclasses.replace(inputs, questions=questions)
    mixed = dataclasses.replace(plain_inputs, audio_contrast=0.5)
    plain = build_pairs(source, plain_inputs, 24, np.random.default_rng(4))
    pairs = build_pairs(source, mixed, 24, np.random.default_rng(4))
    assert [(p.id, p.chosen, p.chosen_intervention) for p in pairs] == \
        [(p.id, p.chosen, p.chosen_intervention) for p in plain]
    contrast = [p for p in pairs if p.meta.get("contrast") == "audio"]
    assert len(contrast) == 12
    for p in pairs:
        if p not in contrast:
            assert p.chosen_intervention == p.rejected_intervention and p.chosen != p.rejected
            continue
        assert p.rejected == p.chosen and p.rejected_intervention != p.chosen_intervention
        assert "original" in (p.chosen_intervention.kind, p.rejected_intervention.kind)
        if questions == "closed_set":  # right for the chosen side's track, wrong for the rejected side's
            for spec, right in ((p.chosen_intervention, True), (p.rejected_intervention, False)):
                row = PredictionRow(source_id=p.source_id, dimension=p.meta["dimension"], condition=spec.kind,
                                    offset=spec.offset, label=LABEL_OF[p.chosen])
                assert is_correct(row) is right, (p.id, spec)


def test_audio_contrast_leaves_the_control_source_alone(inputs):
    mixed = dataclasses.replace(inputs, audio_contrast=1.0)
    pairs = build_pairs("orig_sync", mixed, 24, np.random.default_rng(5))
    assert all(p.chosen_intervention == p.rejected_intervention and p.chosen != p.rejected for p in pairs)


def test_audio_contrast_share_is_checked_at_load():
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "clever_hans.yaml"
    with pytest.raises(RecipeError, match="audio_contrast"):
        load_recipe(recipe, overrides=["data.audio_contrast=1.5"])


def test_layer_readout_finds_a_code_and_cannot_memorise_a_clip():
    """The probe's linear read-out: a class written into the features is read out; a label carried only by a
    clip's identity is not, because the rows of one clip never straddle the training and test folds."""
    from train.clever_hans_probe import readout_accuracy

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(64), 2)
    y = rng.integers(0, 4, size=len(groups))
    coded = rng.normal(size=(len(y), 16)) + 3.0 * np.eye(16)[y]
    assert readout_accuracy(coded, y, groups) > 0.9
    per_clip = rng.integers(0, 2, size=64)[groups]
    identity = np.eye(64)[groups] + 0.01 * rng.normal(size=(len(groups), 64))
    assert readout_accuracy(identity, per_clip, groups) < 0.7
