"""Where Harken reads and writes, decided in one place.

The path rule: built data go to ``<root>/data/<recipe>``, runs to ``<root>/runs/<recipe>``, caches (tiny backbones)
to ``<root>/.cache``. ``<root>`` is the current directory unless ``--root DIR`` or the ``HARKEN_ROOT`` environment
variable says otherwise; ``HARKEN_CACHE`` moves the cache alone. Build, train and eval all resolve through
:func:`project_root`, so a command run from another folder never reads one place and writes another.

Every name that becomes a path (recipe, stage, run, suite) is checked by :func:`check_name`, and every path read
from a data file is checked by :func:`media_path`: nothing a recipe, an override or an annotation says can make
Harken write or read outside the folders it was given.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

ROOT_ENV = "HARKEN_ROOT"
CACHE_ENV = "HARKEN_CACHE"

# A single folder name: starts with a letter or digit (so never "." or ".."), no separator, no NUL.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class PathError(ValueError):
    """A name or path that would leave the folder it belongs to; the message says which and what to do."""


def check_name(name: object, what: str) -> str:
    """Return ``name`` when it is safe as one folder name (letters, digits, ``_ . -``; no ``/``, ``..``, NUL).

    Raises:
        PathError: naming ``what`` (e.g. "recipe name") and the value.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PathError(f"{what} {name!r} is not a plain folder name: use letters, digits, '_', '.' and '-', "
                        "starting with a letter or digit (no '/', '..' or spaces)")
    return name


def _lexical(path: Path) -> Path:
    return Path(os.path.normpath(os.path.abspath(path)))


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` lies in ``folder`` once ``..`` are folded (lexically: a symlink the user placed counts as
    inside, as a data folder linked from another disk should)."""
    return _lexical(Path(path)).is_relative_to(_lexical(Path(folder)))


def media_path(annotation_file: str | Path, video: str, roots: Iterable[str | Path] = ()) -> Path:
    """The media file an annotation's ``video`` names: relative to the annotation file's folder, and inside that
    folder or one of ``roots`` (the recipe's ``data.media_roots``, absolute folders).

    Raises:
        PathError: an absolute path or a ``..`` that leaves those folders, or a NUL byte.
    """
    if "\x00" in video:
        raise PathError("the path holds a NUL byte")
    base = Path(annotation_file).parent
    p = _lexical(base / video)  # an absolute `video` stays absolute here
    allowed = [base, *map(Path, roots)]
    if not any(is_inside(p, r) for r in allowed):
        raise PathError(f"{video!r} points outside {base}" + (f" and the media roots {[str(r) for r in roots]}"
                        if roots else "") + "; keep media under the annotation file's folder or list their "
                        "folder in the recipe's data.media_roots")
    return p


# ----------------------------------------------------------------------------------------------------------------
# root, data, runs, cache


def project_root(root: str | Path | None = None) -> Path:
    """The folder data, runs and caches live under: ``root`` if given, else ``$HARKEN_ROOT``, else the current
    directory (absolute)."""
    chosen = root if root is not None else (os.environ.get(ROOT_ENV) or ".")
    return _lexical(Path(chosen))


@contextmanager
def use_root(root: str | Path | None) -> Iterator[Path]:
    """Make ``root`` the project root for the duration of a command (and for the processes it starts, such as
    data-loader workers), then restore the environment. ``None`` keeps the current rule."""
    before = os.environ.get(ROOT_ENV)
    if root is not None:
        os.environ[ROOT_ENV] = str(project_root(root))
    try:
        yield project_root()
    finally:
        if before is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = before


def data_dir(recipe_name: str, root: str | Path | None = None) -> Path:
    """``<root>/data/<recipe>``: where ``build`` writes a recipe's data and ``train``/``eval`` read it."""
    return project_root(root) / "data" / check_name(recipe_name, "recipe name")


def runs_dir(root: str | Path | None = None) -> Path:
    """``<root>/runs``: the parent of every run folder."""
    return project_root(root) / "runs"


def cache_dir(root: str | Path | None = None) -> Path:
    """``$HARKEN_CACHE`` when set, else ``<root>/.cache`` (tiny backbones and other rebuildable files)."""
    env = os.environ.get(CACHE_ENV)
    return _lexical(Path(env)) if env else project_root(root) / ".cache"


def describe(root: str | Path | None = None) -> str:
    """One line saying where this command reads and writes (printed first by every command)."""
    r = project_root(root)
    return f"root {r} (data {r / 'data'}, runs {runs_dir(r)}, cache {cache_dir(r)})"


def announce(root: str | Path | None = None) -> None:
    """Print :func:`describe` to stderr (stdout stays free for output other programs read, such as JSON)."""
    print(f"[harken] {describe(root)}", file=sys.stderr)


def command(module_args: str, root: str | Path | None = None) -> str:
    """A command line that works from the current directory: ``python -m <module_args>``, plus ``--root`` when
    the project root is not the current directory (so following an error message's advice reaches the same
    folders)."""
    r = project_root(root)
    extra = "" if r == _lexical(Path.cwd()) else f" --root {shlex.quote(str(r))}"
    return f"python -m {module_args}{extra}"


def recipe_arg(name: str, source: str | Path | None = None) -> str:
    """How to name a recipe on a command line from here: its name when that finds the same file, else its path."""
    from recipes.schema import RecipeError, resolve_path

    if source is None:
        return name
    try:
        if resolve_path(name).resolve() == Path(source).resolve():
            return name
    except RecipeError:
        pass
    src = _lexical(Path(source))
    return shlex.quote(os.path.relpath(src) if src.is_relative_to(_lexical(Path.cwd())) else str(src))


def build_command(recipe_name: str, source: str | Path | None, data_folder: str | Path) -> str:
    """The ``build`` command that writes ``data_folder`` for this recipe, runnable from the current directory."""
    recipe = recipe_arg(recipe_name, source)
    if _lexical(Path(data_folder)) == data_dir(recipe_name):
        return command(f"data_builders build {recipe}")
    return f"python -m data_builders build {recipe} --out {shlex.quote(str(data_folder))}"
