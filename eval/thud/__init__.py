"""Thud: the audio-visual grounding diagnostic of "When Vision Speaks for Sound" (Shift/Mute/Swap). ``run`` is the
suite entry point registered in
:mod:`eval.suites`; :func:`compute_metrics` and :func:`parse_answer` are usable on their own."""

from eval.thud.metrics import compute_metrics, read_predictions
from eval.thud.parser import Parsed, parse_answer
from eval.thud.records import PredictionRow, is_correct


def run(ctx):
    """Suite entry point (see :func:`eval.thud.suite.run`); imported lazily so listing suites stays cheap."""
    from eval.thud.suite import run as _run

    return _run(ctx)


__all__ = ["PredictionRow", "Parsed", "compute_metrics", "is_correct", "parse_answer", "read_predictions", "run"]
