"""What every command line shares: the ``--root`` argument, the line saying where it reads and writes, and turning
an expected failure into one line on stderr with exit code 2 (no traceback: the message names the file, record,
key and reason, and what to do). Library code raises; only the ``__main__`` entry points call :func:`guarded`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from recipes.paths import ROOT_ENV, announce, use_root

EXIT_USER_ERROR = 2
DEBUG_ENV = "HARKEN_DEBUG"  # set (e.g. HARKEN_DEBUG=1) to get the traceback instead of the one-line error


class UserError(RuntimeError):
    """A failure the user fixes (a setting, an input, a busy folder), not a bug: reported as one line, exit 2."""


# Errors a command reports as one line. ValueError covers recipe, annotation, path and pydantic validation errors;
# OSError covers missing, unreadable or unwritable files.
EXPECTED: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, UserError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a KeyError's without the quotes ``str`` adds)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--root DIR``: the folder data/, runs/ and .cache/ live under (default: ``$HARKEN_ROOT``, else here)."""
    parser.add_argument("--root", default=None, metavar="DIR",
                        help=f"project folder holding data/, runs/ and .cache/ (default: ${ROOT_ENV}, else the "
                             "current directory)")


def guarded(run: Callable[[], int], root: str | None = None, extra: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command under the project root ``root``: print where it reads and writes, return its exit code, or
    print an expected failure as ``error: ...`` and return 2."""
    try:
        with use_root(root):
            announce()
            return run()
    except (*EXPECTED, *extra) as exc:
        if os.environ.get(DEBUG_ENV):
            raise  # the whole traceback, for a bug report
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


def finite_float(text: str, what: str) -> float:
    """``text`` as a finite number. Raises ValueError naming ``what`` (the argument) for NaN, infinities or words."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}: {text!r} is not a finite number")
    return value


def finite_arg(text: str) -> float:
    """argparse ``type=`` for a finite number: NaN and infinities are refused with the usage line (exit 2)."""
    try:
        return finite_float(text, "value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None
