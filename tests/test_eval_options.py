"""Every suite's options are typed: a recipe with a misspelt or mistyped suite option fails at load with the file,
the key and the reason, and so does ``eval run --set``."""

from __future__ import annotations

import pytest

from eval.__main__ import main as eval_main
from eval.options import OPTIONS, SuiteOptionsError, check_options
from eval.suites import SUITES
from recipes import RecipeError, load_recipe


def _recipe(tmp_path, suites_yaml: str):
    path = tmp_path / "r.yaml"
    path.write_text("# python -m eval\neval:\n  suites:\n" + suites_yaml)
    return path


@pytest.mark.parametrize("suites_yaml, key, reason", [
    ("    thud: {options: {limt: 5}}\n", "eval.suites.thud.options.limt", "unknown option"),
    ("    spectrogram_mcq: {options: {limit: five}}\n", "eval.suites.spectrogram_mcq.options.limit", "integer"),
    ("    audio_mcq: {options: {input_conditions: {fragments: [{window: -1}]}}}\n",
     "eval.suites.audio_mcq.options.input_conditions.fragments.0.window", "greater than 0"),
    ("    caption_classification: {options: {embeder: x}}\n", "eval.suites.caption_classification.options.embeder",
     "unknown option"),
    ("    hierarchy: {options: {probes: [smell]}}\n", "eval.suites.hierarchy.options.probes.0", "text"),
    ("    thud: {options: {modes: [essay]}}\n", "eval.suites.thud.options.<options>", "closed_set, free_form"),
])
def test_bad_suite_option_is_refused_at_load(tmp_path, suites_yaml, key, reason):
    path = _recipe(tmp_path, suites_yaml)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.file == str(path) and err.value.key == key and reason in err.value.reason


def test_good_options_load(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, "    thud: {options: {limit: 2, input_conditions: {no_audio: [silence]}}}\n"
                                           "    audio_mcq: {options: {input_conditions: {}}}\n"))
    assert recipe.eval.suites["thud"].options["limit"] == 2
    parsed = check_options("thud", recipe.eval.suites["thud"].options)
    assert parsed.input_conditions.no_audio == ["silence"] and parsed.input_conditions.fragments == []
    assert check_options("my_own_suite", {"anything": 1}) is None  # no model declared: not checked


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_registered_suite_declares_options_whose_defaults_are_valid(suite):
    from eval.options import options_model

    assert suite in OPTIONS
    assert options_model(suite).model_validate({}) is not None
    assert check_options(suite, {}) is None  # nothing to check, nothing imported


def test_eval_run_set_typo_fails_before_loading_a_model(tmp_path, capsys):
    argv = ["run", "--checkpoint", "no-such-model", "--suites", "audio_mcq", "--out", str(tmp_path),
            "--set", "audio_mcq.limt=3"]
    assert eval_main(argv) == 2
    assert "audio_mcq.limt: unknown option" in capsys.readouterr().err
    with pytest.raises(SuiteOptionsError):
        check_options("audio_mcq", {"limt": 3})
