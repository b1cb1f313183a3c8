"""Annotation readers: every input format becomes a typed record, or an :class:`AnnotationError` naming file,
line (or row) and field, so a build quarantines a bad record and goes on.

Formats:
- the contract's event-time JSONL: :func:`data_builders.annotations.iter_annotations` (re-exported here);
- Oops-style ``transition_times.json``: :func:`iter_transition_times`;
- FineVideo rows, from arrow/parquet shards (``{mp4: bytes, json: {...}}``) or a folder of ``<id>.mp4`` +
  ``<id>.json``: :func:`iter_finevideo` (shard media are written once to a cache folder: media travel as paths);
- an external video preference set (``llava_video``), JSONL of ``{prompt, chosen, rejected, video}``:
  :func:`iter_llava_video`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from data_builders.annotations import (AnnotatedClip, AnnotationError, ClipAnnotation, _first_error,
                                       iter_annotations, iter_jsonl_models)
from recipes.io import write_bytes

__all__ = ["iter_annotations", "iter_transition_times", "iter_finevideo", "iter_llava_video", "FineVideoClip",
           "FVScene", "FVSpeech", "LlavaPreference", "parse_timestamp"]


# ----------------------------------------------------------------------------------------------------------------
# Oops transition_times.json


def iter_transition_times(path: str | Path, videos: str | Path | None = None, *, audio_event: str = "",
                          visual_event: str = "") -> Iterator[AnnotatedClip | AnnotationError]:
    """Read Oops' ``transition_times.json`` (``{name: {"t": [...], "n_notfound": k, "rel_t": [...], "len": s}}``).

    Oops gives several annotators' times of the failure onset per video, with -1 (or any negative) for "not
    found". We take the **median of the valid times** as the event time, robust to one outlying annotator, and set
    ``t_audio = t_visual`` (Oops has no audio labels; the failure's sound - a crash, a thud - is taken to start when
    it is seen). ``len`` is the duration. A video with no valid time is an error on field ``t``. ``line`` is the
    entry's 1-based position in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: transition_times file does not exist")
    folder = Path(videos) if videos is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        yield AnnotationError(path, exc.lineno, "<json>", f"not valid JSON ({exc.msg})")
        return
    if not isinstance(data, dict):
        yield AnnotationError(path, 1, "<root>", "expected an object mapping video name -> times")
        return
    for index, (name, entry) in enumerate(data.items(), start=1):
        if not isinstance(entry, dict):
            yield AnnotationError(path, index, name, "entry must be an object with 't' and 'len'")
            continue
        times = entry.get("t")
        if not isinstance(times, list) or not all(isinstance(t, (int, float)) for t in times):
            yield AnnotationError(path, index, f"{name}.t", "must be a list of numbers")
            continue
        valid = [float(t) for t in times if t >= 0]
        if not valid:
            yield AnnotationError(path, index, f"{name}.t", "no annotator found the transition (all times < 0)")
            continue
        t = float(statistics.median(valid))
        video = f"{name}.mp4" if not name.endswith(".mp4") else name
        try:
            rec = ClipAnnotation(id=f"oops_{Path(video).stem}", video=str(folder / video), source="oops",
                                 duration=float(entry.get("len") or 0), visual_event=visual_event, t_visual=t,
                                 audio_event=audio_event, t_audio=t, n_notfound=entry.get("n_notfound"))
        except ValidationError as exc:
            field, msg = _first_error(exc)
            yield AnnotationError(path, index, f"{name}.{'len' if field == 'duration' else field}", msg)
            continue
        yield AnnotatedClip(record=rec, path=Path(rec.video), file=path, line=index)


# ----------------------------------------------------------------------------------------------------------------
# FineVideo


def parse_timestamp(value: Any) -> float:
    """``"HH:MM:SS.mmm"`` (also ``MM:SS.mmm`` or a number) -> seconds. Raises ValueError on anything else."""
    if isinstance(value, (int, float)) and not math.isfinite(value):
        raise ValueError(f"timestamp {value!r} is not a finite number")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a timestamp 'HH:MM:SS.mmm', got {value!r}")
    parts = value.strip().split(":")
    if len(parts) > 3:
        raise ValueError(f"expected a timestamp 'HH:MM:SS.mmm', got {value!r}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected a timestamp 'HH:MM:SS.mmm', got {value!r}") from None
    total = 0.0
    for n in nums:
        total = total * 60 + n
    if not math.isfinite(total):
        raise ValueError(f"timestamp {value!r} is not a finite number")
    if total < 0:
        raise ValueError(f"negative timestamp {value!r}")
    return total


class _FV(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class FVActivity(_FV):
    description: str
    timestamp: float | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _ts(cls, v):
        return None if v in (None, "") else parse_timestamp(v)


class FVScene(_FV):
    """One FineVideo scene: ``[start, end)`` in seconds, activities, and the scene-level notes."""

    start: float
    end: float
    activities: list[FVActivity] = Field(default_factory=list)
    audio_visual_correlation: str = ""
    mood: str = ""
    narrative: str = ""


class FVSpeech(_FV):
    start: float
    end: float
    text: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _ts(cls, v):
        return parse_timestamp(v)


class FineVideoClip(_FV):
    """A FineVideo video: its file (cached mp4 for shards), scenes and timed speech; ``file``/``row`` say where."""

    id: str
    video: str
    scenes: list[FVScene]
    speech: list[FVSpeech] = Field(default_factory=list)
    file: str
    row: int


def _note(value: Any) -> str:
    """FineVideo notes are strings or small objects ({"description": ...}); keep the text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("description") or value.get("text") or "")
    return ""


def _parse_fv_json(meta: Any, video: str, vid: str, file: Path, row: int) -> FineVideoClip | AnnotationError:
    if isinstance(meta, (str, bytes)):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as exc:
            return AnnotationError(file, row, "json", f"not valid JSON ({exc.msg})")
    if not isinstance(meta, dict):
        return AnnotationError(file, row, "json", "must be an object")
    content = meta.get("content_metadata")
    if not isinstance(content, dict) or not isinstance(content.get("scenes"), list):
        return AnnotationError(file, row, "json.content_metadata.scenes", "missing or not a list")
    scenes = []
    for i, sc in enumerate(content["scenes"]):
        where = f"json.content_metadata.scenes[{i}]"
        if not isinstance(sc, dict):
            return AnnotationError(file, row, where, "must be an object")
        ts = sc.get("timestamps") or {}
        try:
            start = parse_timestamp(ts.get("start_timestamp"))
        except ValueError as exc:
            return AnnotationError(file, row, f"{where}.timestamps.start_timestamp", str(exc))
        try:
            end = parse_timestamp(ts.get("end_timestamp"))
        except ValueError as exc:
            return AnnotationError(file, row, f"{where}.timestamps.end_timestamp", str(exc))
        if end <= start:
            return AnnotationError(file, row, f"{where}.timestamps", f"end {end} is not after start {start}")
        acts = []
        for j, a in enumerate(sc.get("activities") or []):
            try:
                acts.append(FVActivity.model_validate(a if isinstance(a, dict) else {"description": str(a)}))
            except (ValidationError, ValueError) as exc:
                msg = _first_error(exc)[1] if isinstance(exc, ValidationError) else str(exc)
                return AnnotationError(file, row, f"{where}.activities[{j}]", msg)
        scenes.append(FVScene(start=start, end=end, activities=acts,
                              audio_visual_correlation=_note(sc.get("audioVisualCorrelation")),
                              mood=_note(sc.get("mood")), narrative=_note(sc.get("narrativeProgression"))))
    speech = []
    for k, s in enumerate(meta.get("timecoded_text_to_speech") or []):
        try:
            speech.append(FVSpeech.model_validate(s))
        except ValidationError as exc:
            field, msg = _first_error(exc)
            return AnnotationError(file, row, f"json.timecoded_text_to_speech[{k}].{field}", msg)
    return FineVideoClip(id=vid, video=video, scenes=scenes, speech=speech, file=str(file), row=row)


def _write_once(path: Path, data: bytes) -> None:
    """Write media bytes to ``path`` unless a file of that size is already there (atomic)."""
    if path.is_file() and path.stat().st_size == len(data):
        return
    write_bytes(path, data)


def _iter_shard_rows(path: Path) -> Iterator[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        pf = pq.ParquetFile(str(path))
        for batch in pf.iter_batches(batch_size=8):
            yield from batch.to_pylist()
        return
    # datasets' .arrow shards are IPC streams; plain IPC files are read too.
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield from reader.get_batch(i).to_pylist()
            return
        for batch in reader:
            yield from batch.to_pylist()


def iter_finevideo(path: str | Path, cache_dir: str | Path) -> Iterator[FineVideoClip | AnnotationError]:
    """Read FineVideo rows from a ``.parquet``/``.arrow`` shard, or from a folder of ``<id>.mp4`` + ``<id>.json``.

    Shard rows carry the mp4 as bytes; each is written once to ``cache_dir/<id>.mp4`` (kept across builds) and the
    record points at that file. ``row`` is the 0-based row of the shard, or the file's index in the folder.
    """
    path = Path(path)
    cache_dir = Path(cache_dir)
    if path.is_dir():
        for row, js in enumerate(sorted(path.glob("*.json"))):
            mp4 = js.with_suffix(".mp4")
            try:
                meta = json.loads(js.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                yield AnnotationError(js, exc.lineno, "<json>", f"not valid JSON ({exc.msg})")
                continue
            yield _parse_fv_json(meta, str(mp4.resolve()), f"fv_{js.stem}", js, row)
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FineVideo input does not exist (give a .parquet/.arrow shard or a folder)")
    for row, rec in enumerate(_iter_shard_rows(path)):
        meta = rec.get("json")
        if isinstance(meta, (str, bytes)):
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError as exc:
                yield AnnotationError(path, row, "json", f"not valid JSON ({exc.msg})")
                continue
        name = None
        if isinstance(meta, dict):
            name = meta.get("original_video_filename") or meta.get("youtube_id") or meta.get("id")
        vid = f"fv_{Path(str(name)).stem}" if name else f"fv_{path.stem}_{row:06d}"
        mp4 = rec.get("mp4")
        if isinstance(mp4, dict):  # datasets' Video/binary features sometimes wrap bytes
            mp4 = mp4.get("bytes")
        if not isinstance(mp4, (bytes, bytearray)) or not mp4:
            yield AnnotationError(path, row, "mp4", "missing or empty video bytes")
            continue
        target = cache_dir / f"{vid}.mp4"
        _write_once(target, bytes(mp4))
        yield _parse_fv_json(meta, str(target.resolve()), vid, path, row)


# ----------------------------------------------------------------------------------------------------------------
# llava_video (external preference set)


class LlavaPreference(BaseModel):
    """A general video preference: prompt, chosen, rejected, video (relative to the JSONL's folder)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    prompt: str = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    video: str = Field(min_length=1)


@dataclass(frozen=True)
class LlavaItem:
    record: LlavaPreference
    path: Path
    file: Path
    line: int

    @property
    def id(self) -> str:
        return self.record.id or f"llava_{self.file.stem}_{self.line:06d}"


def iter_llava_video(path: str | Path) -> Iterator[LlavaItem | AnnotationError]:
    """Read a JSONL of ``{prompt, chosen, rejected, video}`` preferences; errors name file, line and field."""
    path = Path(path)
    for item in iter_jsonl_models(path, LlavaPreference, "llava_video"):
        if isinstance(item, AnnotationError):
            yield item
            continue
        lineno, rec = item
        yield LlavaItem(record=rec, path=(path.parent / rec.video).resolve(), file=path, line=lineno)
