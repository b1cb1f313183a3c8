"""Atomic writes: a reader (or a crash) never sees half a file or half a folder.

Every file Harken writes goes through these helpers: the content is written to a temporary sibling (same folder, so
the final rename stays on one filesystem) and moved into place with :func:`os.replace`, which is atomic on POSIX
and Windows. A folder is built in a staging sibling and swapped in as a whole (:func:`staged_folder`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


def _tmp_sibling(path: Path) -> Path:
    # The extension is kept (``x.tmp123.mp4``) so tools that pick a format from the name (ffmpeg, soundfile, PIL)
    # still recognise it; the pid keeps two processes writing the same file from sharing one temporary.
    return path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block finishes, it replaces ``path`` in one step.

    If the block raises, the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() and not tmp.is_dir():
            tmp.unlink()
        elif tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _finite(obj: Any, where: str = "") -> None:
    """Raise ValueError naming the key of the first NaN or infinity (JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where or '<value>'}: {obj} is not a finite number; JSON cannot hold it")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities, naming the key (standard JSON has no such values)."""
    _finite(obj)
    return json.dumps(obj, allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write ``obj`` as JSON atomically. Raises ValueError (naming the key) for NaN or infinite numbers."""
    write_text(path, dumps_json(obj, indent=indent, sort_keys=sort_keys))


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """Write rows (dicts or pydantic models) as JSON lines atomically (models without their unset ``None`` fields)."""
    from pydantic import BaseModel

    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            if isinstance(row, BaseModel):
                row = row.model_dump(mode="json", exclude_none=True)
            fh.write(dumps_json(row, ensure_ascii=False) + "\n")


def swap_folder(staged: str | Path, target: str | Path) -> None:
    """Move a complete folder ``staged`` to ``target``, replacing what was there. The old folder is renamed aside
    first and deleted last, so ``target`` is at every moment either the old or the new complete folder (a crash
    between the two renames leaves ``target.old``, which the next swap removes)."""
    staged, target = Path(staged), Path(target)
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder next to ``target``; when the block finishes, it replaces ``target`` as a whole
    (:func:`swap_folder`). If the block raises, the staging folder is removed and ``target`` is untouched."""
    target = Path(target)
    staged = target.with_name(f"{target.name}.staging{os.getpid()}")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    try:
        yield staged
        swap_folder(staged, target)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
