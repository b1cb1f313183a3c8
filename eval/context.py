"""What a suite gets to run with: the loaded checkpoint, the media settings, its options, and a prediction cache.

The cache keys each prediction by checkpoint content, suite, item, settings and the item's inputs (the identity of
its media files, the exact intervention and prompt), so an interrupted evaluation resumes where it stopped, a
repeated one costs nothing, and a changed input is never answered from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from recipes.media import MediaSettings


# In-process memo: (folder, files with size and mtime) -> hash. `eval watch` asks for the fingerprint of every
# checkpoint on every scan; re-hashing tens of GB of unchanged weights each time would dominate its run time.
_FINGERPRINTS: dict[tuple, str] = {}


def checkpoint_fingerprint(path: str | Path) -> str:
    """Identity of a checkpoint folder's weight and config files (not its path), in time independent of their size.

    Small files (configs, tokenizers, LoRA adapters, tiny models: up to :data:`SMALL_FILE` bytes) count by their
    full bytes, so an identical copy elsewhere has the same fingerprint and any change to them changes it. Larger
    files (base-model shards) count by :func:`large_file_identity`: size, modification time, the safetensors header
    (every tensor's name, dtype, shape and offsets) and the first and last MiB, never every byte.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"}
                   and "trainer_state" not in p.name and p.parent.name != "eval")
    stamp = (str(path.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _FINGERPRINTS:
        _FINGERPRINTS[stamp] = _hash_files(path, files)
    return _FINGERPRINTS[stamp]


# Files up to this size are hashed in full. 64 MiB hashes in well under 0.1 s and covers configs, tokenizers, the
# tiny test models and typical LoRA adapters (rank 8-16 on a 7B model's projections is 10-80 MB in bf16), whose
# every byte matters because training changes them in place; a base model's multi-GB shards are far above it.
SMALL_FILE = 64 << 20


def large_file_identity(path: Path) -> bytes:
    """What identifies a large weight file cheaply: size and modification time (a rewrite changes them; a copy that
    keeps times, as ``cp -a``, ``rsync -a`` and ``shutil.copytree`` do, keeps them), the safetensors header when it
    has one (a different tensor set, dtype or shape changes it), and its first and last MiB of bytes."""
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with path.open("rb") as fh:
        if path.suffix == ".safetensors":
            n = int.from_bytes(fh.read(8), "little")
            if 0 < n <= min(st.st_size - 8, 1 << 28):  # headers are MBs at most; a bogus length is not read
                h.update(fh.read(n))
        fh.seek(0)
        h.update(fh.read(_EDGE))
        fh.seek(max(st.st_size - _EDGE, 0))
        h.update(fh.read(_EDGE))
    return h.digest()


_MEDIA_IDS: dict[tuple, str] = {}
# Enough bytes from each end to tell two encodes apart; with the size this identifies a media file without reading
# gigabytes of clips on every evaluation.
_EDGE = 1 << 20


def media_identity(path: str | Path) -> str:
    """Content identity of a media file, independent of its path: size + SHA-256 of its first and last MiB (whole
    file when smaller). ``"missing"`` when it does not exist (the suite then fails on it by name)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return "missing"
    stamp = (str(path.absolute()), st.st_size, st.st_mtime_ns)
    if stamp not in _MEDIA_IDS:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            h.update(fh.read(_EDGE))
            if st.st_size > 2 * _EDGE:
                fh.seek(-_EDGE, os.SEEK_END)
            h.update(fh.read())
        _MEDIA_IDS[stamp] = f"{st.st_size}:{h.hexdigest()[:16]}"
    return _MEDIA_IDS[stamp]


# Waveforms decoded by this process, by file state and decoding settings, up to DECODED_MAX_BYTES, least recently
# used first out: `eval watch` plays every checkpoint the same files, and decoding them again cost more than scoring
# them on the tiny models.
_DECODED: OrderedDict[tuple, Any] = OrderedDict()
DECODED_MAX_BYTES = 64 << 20


def decoded_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None):
    """``data_builders.media.load_audio(path, sample_rate, max_seconds=max_seconds)[0]``, decoded once per process
    while the file is unchanged; a copy each time (callers may change theirs)."""
    from data_builders import media

    path = Path(path)
    try:
        st = path.stat()
    except OSError:  # the loader says what is wrong with it
        return media.load_audio(path, sample_rate, max_seconds=max_seconds)[0]
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns, sample_rate, max_seconds)
    if key in _DECODED:
        _DECODED.move_to_end(key)
        return _DECODED[key].copy()
    wave = media.load_audio(path, sample_rate, max_seconds=max_seconds)[0]
    if wave.nbytes > DECODED_MAX_BYTES:
        return wave
    _DECODED[key] = wave
    while sum(a.nbytes for a in _DECODED.values()) > DECODED_MAX_BYTES:
        _DECODED.popitem(last=False)
    return wave.copy()


def _hash_files(path: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(path).as_posix().encode())
        if p.stat().st_size > SMALL_FILE:
            h.update(b"large:" + large_file_identity(p))
            continue
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


# Longest time between two fsyncs of a prediction cache (see PredictionCache.put).
SYNC_SECONDS = 1.0


class PredictionCache:
    """Append-only JSONL of predictions: one line per (key, prediction); lines written and flushed one by one."""

    def __init__(self, path: str | Path, also_read: tuple[str | Path, ...] = ()):
        """``path`` is read and appended to; ``also_read`` are other shards' files, read only (data-parallel
        evaluation: each process appends to its own file, and the merge reads them all)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, Any] = {}
        for source in (*also_read, self.path):
            self._read(Path(source))
        self.hits = 0
        self.misses = 0
        self._synced = float("-inf")  # monotonic time of the last fsync

    def _read(self, path: Path) -> None:
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that item is simply recomputed
            self._data[row["key"]] = row["value"]

    def peek(self, key: str) -> Any | None:
        """The stored value of ``key`` or None, without computing or counting anything."""
        return self._data.get(key)

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self._data:
            self.hits += 1
            return self._data[key]
        self.misses += 1
        return self.put(key, compute())

    def put(self, key: str, value: Any) -> Any:
        """Store ``value`` under ``key`` (appended and flushed to the file); returns ``value``."""
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "value": value}) + "\n")
            fh.flush()
            # A flushed line survives the process being killed (the OS holds it); fsync adds only survival of a
            # power cut, so it runs at most every SYNC_SECONDS: a cut then costs the last second's predictions,
            # which a resumed run recomputes, while an fsync per line cost more than the scoring of a tiny model.
            if time.monotonic() - self._synced >= SYNC_SECONDS:
                os.fsync(fh.fileno())
                self._synced = time.monotonic()
        self._data[key] = value
        return value


class EvalContext:
    """Everything a suite's ``run(ctx)`` needs. ``options`` are the suite's settings (recipe or command line).

    ``model`` and ``processor`` are given, or loaded by ``load`` (returning both) the first time a suite reads
    either: a suite reads them only to compute a prediction the cache lacks, so a fully cached evaluation never
    loads the checkpoint.
    """

    def __init__(self, checkpoint: Path, fingerprint: str, media: MediaSettings, out_dir: Path,
                 cache: PredictionCache, model: Any = None, processor: Any = None,
                 options: dict[str, Any] | None = None, seed: int = 0, shard: tuple[int, int] = (0, 1),
                 load: Callable[[], tuple[Any, Any]] | None = None):
        self.checkpoint, self.fingerprint, self.media, self.out_dir = checkpoint, fingerprint, media, out_dir
        self.cache, self.options, self.seed = cache, dict(options or {}), seed
        # Data-parallel evaluation (accelerate): this process computes the items whose index % world == rank.
        self.shard = shard
        self._model, self._processor, self._load = model, processor, load

    def _loaded(self) -> None:
        if self._load is not None:
            self._model, self._processor = self._load()
            self._load = None

    @property
    def model(self) -> Any:
        self._loaded()
        return self._model

    @property
    def processor(self) -> Any:
        self._loaded()
        return self._processor

    def takes_audio(self) -> bool:
        """Whether the checkpoint's processor encodes audio, remembered in the prediction cache (not counted as a
        prediction), so suites can plan their items without loading the checkpoint."""
        from train.inputs import takes_audio

        key = self.key("checkpoint", "takes_audio", {})
        value = self.cache.peek(key)
        if value is None:
            value = self.cache.put(key, bool(takes_audio(self.processor)))
        return bool(value)

    def key(self, suite: str, item_id: str, settings: dict, inputs: Any = None) -> str:
        """The cache key of one item's prediction under ``settings``; ``inputs`` is what the prediction is computed
        from (e.g. :func:`media_identity` of its files and its record), so a changed input gets a new key."""
        parts = [self.fingerprint, suite, item_id, settings, self.media.model_dump()]
        return PredictionCache.key(*parts, *([inputs] if inputs is not None else []))

    def lookup(self, suite: str, item_id: str, settings: dict, inputs: Any = None) -> Any | None:
        """The cached prediction, or None when it has not been computed (by this or another shard)."""
        return self.cache.peek(self.key(suite, item_id, settings, inputs))

    def cached(self, suite: str, item_id: str, settings: dict, compute: Callable[[], Any], inputs: Any = None) -> Any:
        """The prediction for one item under ``settings``, from the cache or computed and stored."""
        return self.cache.get_or_compute(self.key(suite, item_id, settings, inputs), compute)


class Batched:
    """Predictions computed several at a time, handed out one at a time to :meth:`EvalContext.cached`.

    A suite registers, in the order it will ask for them, the items whose prediction the cache lacks (:meth:`want`);
    the ``compute`` of one of them calls :meth:`get`, which runs ``compute_many`` on that item and the next
    ``size - 1`` registered ones and keeps the others' values for when they are asked. Each value is still stored
    through ``cached`` by its own item (same keys, same hit and miss counts as one at a time), and nothing is
    computed for an item the cache already answers.
    """

    def __init__(self, compute_many: Callable[[list[Any]], list[Any]], size: int):
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        self._compute_many, self.size = compute_many, size
        self._queue: list[tuple[str, Any]] = []
        self._ready: dict[str, Any] = {}

    def want(self, ident: str, payload: Any) -> None:
        """Register item ``ident`` (``payload`` is what ``compute_many`` gets for it) as needing a prediction."""
        self._queue.append((ident, payload))

    def get(self, ident: str, payload: Any) -> Any:
        """The value of ``ident``: computed now with the registered items that follow it, or kept from an earlier
        batch. An item that was never registered is computed alone."""
        if ident not in self._ready:
            at = next((i for i, (k, _) in enumerate(self._queue) if k == ident), None)
            chunk = [(ident, payload)] if at is None else self._queue[at: at + self.size]
            if at is not None:
                del self._queue[at: at + self.size]
            values = self._compute_many([p for _, p in chunk])
            if len(values) != len(chunk):
                raise RuntimeError(f"batched computation returned {len(values)} values for {len(chunk)} items")
            self._ready.update((k, v) for (k, _), v in zip(chunk, values))
        return self._ready.pop(ident)
