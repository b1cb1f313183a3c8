"""The registry of evaluation suites: one plain dict, name -> "module:function" (resolved lazily, so listing the
suites imports nothing heavy and a suite's module has no import-time side effects).

A suite function has the signature ``run(ctx: eval.context.EvalContext) -> dict`` and returns its JSON section
of ``results.json`` (``{"metrics": {...}, ...}``), with every number computed from predictions it made or cached.
"""

from __future__ import annotations

import importlib
from typing import Callable

SUITES: dict[str, str] = {
    "thud": "eval.thud:run",
    "spectrogram_mcq": "eval.spectrogram_mcq:run",
    "audio_mcq": "eval.audio_mcq:run",
    "caption_classification": "eval.caption_classification:run",
    "hierarchy": "eval.hierarchy:run",
    "lmms_eval": "eval.general:run",
}


def get_suite(name: str) -> Callable:
    """Return the run function of suite ``name``. Raises KeyError naming the known suites."""
    if name not in SUITES:
        raise KeyError(f"unknown eval suite {name!r}; known: {sorted(SUITES) or 'none yet'}")
    module, func = SUITES[name].split(":")
    return getattr(importlib.import_module(module), func)
