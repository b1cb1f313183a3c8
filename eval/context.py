"""What a suite gets to run with: the loaded checkpoint, the media settings, its options, and a prediction cache.

The cache keys each prediction by checkpoint content, suite, item and settings, so an interrupted evaluation
resumes where it stopped and a repeated one costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recipes.media import MediaSettings


def checkpoint_fingerprint(path: str | Path) -> str:
    """Content hash of a checkpoint folder's weight and config files (not its path or mtime)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"}
                   and "trainer_state" not in p.name and p.parent.name != "eval")
    for p in files:
        h.update(p.relative_to(path).as_posix().encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class PredictionCache:
    """Append-only JSONL of predictions: one line per (key, prediction); lines written and flushed one by one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, Any] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: that item is simply recomputed
                self._data[row["key"]] = row["value"]
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self._data:
            self.hits += 1
            return self._data[key]
        self.misses += 1
        value = compute()
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "value": value}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._data[key] = value
        return value


@dataclass
class EvalContext:
    """Everything a suite's ``run(ctx)`` needs. ``options`` are the suite's settings (recipe or command line)."""

    checkpoint: Path
    fingerprint: str
    model: Any
    processor: Any
    media: MediaSettings
    out_dir: Path
    cache: PredictionCache
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def cached(self, suite: str, item_id: str, settings: dict, compute: Callable[[], Any]) -> Any:
        """The prediction for one item under ``settings``, from the cache or computed and stored."""
        key = PredictionCache.key(self.fingerprint, suite, item_id, settings, self.media.model_dump())
        return self.cache.get_or_compute(key, compute)
