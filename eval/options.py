"""Typed suite options: every registered suite names a pydantic model of its options, checked when a recipe is
loaded and again when a suite is run (``--set`` overrides included), so ``limt: 5`` fails before any work with the
file, the key and the reason instead of being ignored.

To add a suite: register its run function in :data:`eval.suites.SUITES` and its options model here (a model with
``extra="forbid"``, every field defaulted or checked by the suite itself so that ``{}`` is valid). Models are named
by string and imported only when options are checked, like the suites themselves.
"""

from __future__ import annotations

import importlib

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval.conditions import InputConditions

OPTIONS: dict[str, str] = {
    "thud": "eval.thud.options:ThudOptions",
    "spectrogram_mcq": "eval.options:SpectrogramMcqOptions",
    "audio_mcq": "eval.audio_mcq:AudioMcqOptions",
    "caption_classification": "eval.caption_classification:CaptionOptions",
    "hierarchy": "eval.hierarchy:HierarchyOptions",
    "lmms_eval": "eval.general:LmmsEvalOptions",
}


class SuiteOptionsError(ValueError):
    """Bad options of one suite: ``key`` is the dotted path inside the suite's options."""

    def __init__(self, suite: str, key: str, reason: str):
        self.suite, self.key, self.reason = suite, key, reason
        super().__init__(f"{suite}.{key}: {reason}")


class SpectrogramMcqOptions(BaseModel):
    """Options of the ``spectrogram_mcq`` suite (read by :mod:`eval.spectrogram_mcq`)."""

    model_config = ConfigDict(extra="forbid")

    items: str | None = Field(None, description="items.jsonl of the built benchmark (default: the recipe's)")
    split: str = Field("test", description="which split to evaluate")
    limit: int | None = Field(None, ge=1, description="N items taken as whole option sets, for smoke runs")
    normalise: bool = Field(False, description="length-normalised option log-likelihood")
    input_conditions: InputConditions | None = Field(
        None, description="omni models: ask the audio questions again without audio and with fragments")


def options_model(suite: str) -> type[BaseModel] | None:
    """The options model of ``suite``, or None for a suite that declares none (then options are not checked)."""
    if suite not in OPTIONS:
        return None
    module, name = OPTIONS[suite].split(":")
    return getattr(importlib.import_module(module), name)


def check_options(suite: str, options: dict) -> BaseModel | None:
    """Validate ``options`` of ``suite`` against its model; returns the parsed model (None: no model declared, or
    no options given).

    Raises:
        SuiteOptionsError: naming the option's dotted key and the reason (an unknown key says so).
    """
    if not options and suite in OPTIONS:
        # Every model accepts {} (a test holds each registered suite to it), and not importing the model keeps
        # loading a recipe free of a suite's imports (its options model may live next to code that loads torch).
        return None
    model = options_model(suite)
    if model is None:
        return None
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ())) or "<options>"
        reason = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            known = ", ".join(sorted(model.model_fields)) if len(err.get("loc", ())) == 1 else ""
            reason = "unknown option" + (f" (known: {known})" if known else "")
        raise SuiteOptionsError(suite, key, reason) from exc
    except ValueError as exc:  # a model's own cross-field check (model_post_init) raises plain ValueError
        raise SuiteOptionsError(suite, "<options>", str(exc)) from exc
