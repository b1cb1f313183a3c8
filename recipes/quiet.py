"""Output of Harken's commands, set up once at startup by every command-line entry point (never on import):
Harken's own messages through ``logging`` to stderr, third-party deprecation chatter and per-load bars off.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Third-party warnings about the libraries' own API churn (deprecated aliases, future defaults): they are addressed
# to whoever maintains the calling code, not to a user running a recipe, and they bury Harken's own messages.
_THIRD_PARTY = r"(transformers|trl|peft|accelerate|datasets|torch|torchvision|huggingface_hub|librosa|audioread" \
               r"|wandb|deepspeed|bitsandbytes|moviepy|av|numpy)(\.|$)"
_PACKAGES = ("recipes", "data_builders", "train", "eval")
_CHATTY_LOGGERS = ("bitsandbytes", "DeepSpeed", "deepspeed", "accelerate", "torchao")


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def quiet_startup(level: int = logging.INFO) -> None:
    """Set up output once per command: Harken's messages through ``logging`` at ``level``, third-party
    deprecation chatter and per-load weight bars off (transformers' own warnings, e.g. weights missing from a
    checkpoint, stay: they are the user's business). Called by every command-line entry point, never on import.

    ``HARKEN_VERBOSE=1`` keeps every third-party warning (for debugging a library upgrade).
    """
    # Idle OpenMP threads sleep instead of spinning: on a CPU shared with other work (a laptop, CI, a data build
    # beside training) spinning threads steal the cores the real work needs (one evaluation of the demo's
    # checkpoint took 42 s of wall time spinning against 16 s passive on a busy 2-core machine). Only effective
    # before torch loads OpenMP, hence here; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if os.environ.get("HARKEN_VERBOSE") != "1":
        for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=_THIRD_PARTY)
        # PEFT checks rank/alpha patterns against module names only; Harken's patterns double the rank of fused
        # MoE gate+up expert *parameters* (Qwen3-Omni), where PEFT does apply them (tests/test_lora_targets.py),
        # so its "did not match any targeted module" would tell a user something false.
        warnings.filterwarnings("ignore", message=r"The following (rank|alpha)_pattern keys did not match",
                                category=RuntimeWarning, module=_THIRD_PARTY)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the fork warning of tokenizers' thread pool
        # "Loading weights" / "Writing model shards" bars: one per model load, many per run. Training, build and
        # evaluation keep their own bars.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # "Saving the dataset" inside build
        # Libraries that log through the standard `logging` keep their errors only: bitsandbytes' "Failed to load
        # CPU gemm_4bit_forward" and DeepSpeed's "Setting accelerator to CPU" on every CPU import. The level covers
        # the package's module loggers (they inherit it); the filter covers DeepSpeed, which sets its own logger's
        # level when it is imported.
        for name in _CHATTY_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(logging.ERROR)
            if _errors_only not in logger.filters:
                logger.addFilter(_errors_only)
        if "transformers" in sys.modules:  # already imported (tests, notebooks): the variable came too late
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    for name in _PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a progress bar's redirect, a test's capture)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


