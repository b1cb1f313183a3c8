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

__all__ = ["iter_annotations", "iter_transition_times", "iter_oops", "read_event_texts", "oops_time", "iter_finevideo", "iter_llava_video", "FineVideoClip",
           "FVScene", "FVSpeech", "LlavaPreference", "parse_timestamp"]


# ----------------------------------------------------------------------------------------------------------------
# Oops transition_times.json


def oops_time(times: list[float]) -> float:
    """The failure onset of an Oops clip as the official loader takes it (cvlab-columbia/oops ``dataloader.py``):
    the middle element of the sorted annotator times, "not found" (-1) entries included, so a clip that most
    annotators could not place gets a negative time and is dropped."""
    ordered = sorted(float(t) for t in times)
    return ordered[len(ordered) // 2]


def _oops_entry(path: Path, index: int, name: str, entry: Any, video: Path, texts: dict[str, Any],
                split: str | None) -> AnnotatedClip | AnnotationError:
    """One ``{t, rel_t, n_notfound, len}`` entry as an annotation; ``len`` may be absent (the held-out file has
    none), the file's duration is then read from the video."""
    if not isinstance(entry, dict):
        return AnnotationError(path, index, name, "entry must be an object with 't'")
    times = entry.get("t")
    if not isinstance(times, list) or not times or not all(isinstance(t, (int, float)) for t in times):
        return AnnotationError(path, index, f"{name}.t", "must be a non-empty list of numbers")
    t = oops_time(times)
    if t < 0:
        return AnnotationError(path, index, f"{name}.t", f"the median annotator time is {t} (most annotators found "
                               "no failure); the official loader drops this clip", reason="no_transition")
    duration = entry.get("len")
    if duration is None:
        from data_builders.media import MediaError, probe_duration

        try:
            duration = probe_duration(video)
        except MediaError as exc:
            return AnnotationError(path, index, f"{name}.video", str(exc), reason=exc.reason)
    fields = {"visual_event": "", "audio_event": "", **texts}
    try:
        rec = ClipAnnotation(**{**fields, "id": f"oops_{name}", "video": str(video), "source": "oops",
                                "duration": duration, "t_visual": t, "t_audio": t, "split": split,
                                "n_notfound": entry.get("n_notfound")})
    except ValidationError as exc:
        field, msg = _first_error(exc)
        return AnnotationError(path, index, f"{name}.{'len' if field == 'duration' else field}", msg)
    return AnnotatedClip(record=rec, path=video, file=path, line=index)


def _read_json_object(path: Path) -> dict | AnnotationError:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return AnnotationError(path, exc.lineno, "<json>", f"not valid JSON ({exc.msg})")
    if not isinstance(data, dict):
        return AnnotationError(path, 1, "<root>", "expected an object mapping video name -> times")
    return data


def iter_transition_times(path: str | Path, videos: str | Path | None = None, *, audio_event: str = "",
                          visual_event: str = "") -> Iterator[AnnotatedClip | AnnotationError]:
    """Read one Oops-style ``transition_times.json`` (``{name: {"t": [...], "n_notfound": k, "rel_t": [...],
    "len": s}}``) whose videos are ``<videos>/<name>.mp4`` (default: the JSON's folder).

    The event time is :func:`oops_time` (the official loader's median rule); ``t_audio = t_visual`` (Oops has no
    audio labels: the failure's sound is taken to start when it is seen). Every clip gets the same event texts;
    :func:`iter_oops` reads the whole download with per-clip texts. ``line`` is the entry's 1-based position.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: transition_times file does not exist")
    folder = Path(videos) if videos is not None else path.parent
    data = _read_json_object(path)
    if isinstance(data, AnnotationError):
        yield data
        return
    texts = {"audio_event": audio_event, "visual_event": visual_event}
    for index, (name, entry) in enumerate(data.items(), start=1):
        stem = name[:-4] if name.endswith(".mp4") else name
        yield _oops_entry(path, index, stem, entry, folder / f"{stem}.mp4", texts, None)


# The Oops download (https://oops.cs.columbia.edu/data/, loader: github.com/cvlab-columbia/oops):
# oops_dataset/annotations/{transition_times.json, heldout_transition_times.json, train.txt, val.txt,
# train_filtered.txt, val_filtered.txt} and oops_dataset/oops_video/{train,val}/<name>.mp4.
OOPS_SPLITS = {"train": "train", "val": "test"}  # the official val split is Harken's held-out test split


def _names(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln[:-4] if ln.endswith(".mp4") else ln for ln in lines if ln]


def oops_files(root: str | Path) -> list[Path]:
    """The annotation files of an Oops download that a build reads (for input hashes)."""
    ann = Path(root) / "annotations"
    names = ("transition_times.json", "heldout_transition_times.json", "train.txt", "val.txt",
             "train_filtered.txt", "val_filtered.txt")
    return [ann / n for n in names if (ann / n).is_file()]


def read_event_texts(path: str | Path) -> tuple[dict[str, dict[str, Any]], list[AnnotationError]]:
    """Per-clip event texts: a JSONL keyed by ``id`` (``oops_<name>`` or ``<name>``; the Thud annotations are such a
    file). Every field but the annotation's own (id, video, source, duration, times, split) is copied onto the clip:
    ``visual_event``, ``audio_event`` and any extra annotation field. Returns the texts by clip name and an error for
    each line that is not a JSON object with a string ``id`` (those lines are left out).

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: event texts file does not exist")
    own = {"id", "video", "source", "duration", "t_visual", "t_audio", "split"}
    out: dict[str, dict[str, Any]] = {}
    errors: list[AnnotationError] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(AnnotationError(path, lineno, "<json>", f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            errors.append(AnnotationError(path, lineno, "id", "each line must be an object with a string 'id'"))
            continue
        out[row["id"].removeprefix("oops_")] = {k: v for k, v in row.items() if k not in own}
    return out, errors


def iter_oops(root: str | Path, events: str | Path | None = None, *, filtered: bool = True, heldout: bool = True,
              audio_event: str = "", visual_event: str = "",
              stats: dict[str, int] | None = None) -> Iterator[AnnotatedClip | AnnotationError]:
    """Read an Oops download as it is (layout above): both split folders, the official ``train.txt``/``val.txt``
    splits (val -> Harken's ``test`` split), the ``*_filtered.txt`` lists when ``filtered``, the median rule of
    :func:`oops_time`, and ``heldout_transition_times.json`` (no ``len``: durations come from the files) for clips
    the main file lacks. ``events``: per-clip texts (:func:`read_event_texts`); ``audio_event``/``visual_event`` fill
    clips it lacks. A clip with no event text at all is an error (answers would name no event, swaps find no donor).
    ``stats`` (when given) counts ``outside_splits``: annotated clips not in the official (filtered) split lists.

    Raises:
        FileNotFoundError: no ``annotations/transition_times.json`` or no split list under ``root``.
    """
    root = Path(root)
    ann = root / "annotations"
    main = ann / "transition_times.json"
    if not main.is_file():
        raise FileNotFoundError(f"{main} does not exist; give the folder that holds annotations/ and oops_video/")
    split_of: dict[str, str] = {}
    for official, ours in OOPS_SPLITS.items():
        lst = ann / f"{official}.txt"
        if not lst.is_file():
            raise FileNotFoundError(f"{lst} does not exist (the official split list of the Oops download)")
        keep = set(_names(ann / f"{official}_filtered.txt")) if filtered and (ann / f"{official}_filtered.txt"
                                                                               ).is_file() else None
        for name in _names(lst):
            if keep is None or name in keep:
                split_of[name] = official
    texts, bad_lines = read_event_texts(events) if events is not None else ({}, [])
    yield from bad_lines
    default = {k: v for k, v in (("audio_event", audio_event), ("visual_event", visual_event)) if v}
    files = [main] + ([ann / "heldout_transition_times.json"] if heldout and (ann / "heldout_transition_times.json"
                                                                              ).is_file() else [])
    seen: set[str] = set()
    for path in files:
        data = _read_json_object(path)
        if isinstance(data, AnnotationError):
            yield data
            continue
        for index, (name, entry) in enumerate(data.items(), start=1):
            name = name[:-4] if name.endswith(".mp4") else name
            if name in seen:
                continue  # the main file's entry wins
            if name not in split_of:
                if stats is not None:
                    stats["outside_splits"] = stats.get("outside_splits", 0) + 1
                continue
            seen.add(name)
            clip_texts = {**default, **texts.get(name, {})}
            if not (clip_texts.get("audio_event") or clip_texts.get("visual_event")):
                yield AnnotationError(path, index, f"{name}.audio_event", "no event text for this clip; add it to "
                                      "the events file or set audio_event/visual_event", reason="missing_event_text")
                continue
            official = split_of[name]
            video = root / "oops_video" / official / f"{name}.mp4"
            yield _oops_entry(path, index, name, entry, video, clip_texts, OOPS_SPLITS[official])


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


# The published row schema (dataset card of HuggingFaceFV/finevideo, ``dataset_info.features``, and the annotation
# schema of huggingface/fineVideo ``contentannotation/video2annotation.py``): ``json.content_metadata.scenes[]``
# with ``timestamps{start_timestamp, end_timestamp}``, ``activities[{description, timestamp{start_timestamp,
# end_timestamp}}]``, ``audioVisualCorrelation`` (float in [0, 1]), ``mood{description, keyMoments[{timestamp,
# changeDescription}]}``, ``narrativeProgression[{description, timestamp}]``; speech in
# ``json.timecoded_text_to_speech[{start, end, text}]``. Timestamps are "HH:MM:SS.mmm" strings.
class _Span(_FV):
    start_timestamp: str
    end_timestamp: str


class _RawActivity(_FV):
    description: str
    timestamp: _Span | None = None


class _RawKeyMoment(_FV):
    timestamp: str
    changeDescription: str = ""


class _RawMood(_FV):
    description: str = ""
    keyMoments: list[_RawKeyMoment] = Field(default_factory=list)


class _RawNarrative(_FV):
    description: str
    timestamp: str | None = None


class _RawScene(_FV):
    sceneId: int | None = None
    title: str = ""
    timestamps: _Span
    activities: list[_RawActivity] = Field(default_factory=list)
    audioVisualCorrelation: float | None = Field(None, ge=0, le=1)
    mood: _RawMood | None = None
    narrativeProgression: list[_RawNarrative] = Field(default_factory=list)


class FVActivity(_FV):
    """An activity of a scene and its time span in seconds (None where the annotation gives none)."""

    description: str
    start: float | None = None
    end: float | None = None


class FVMoment(_FV):
    """A timed note of a scene (a narrative moment, a mood change), at ``t`` seconds."""

    t: float | None
    text: str


class FVScene(_FV):
    """One FineVideo scene: ``[start, end)`` in seconds of the source video, its activities and notes."""

    start: float
    end: float
    title: str = ""
    activities: list[FVActivity] = Field(default_factory=list)
    audio_visual_correlation: float | None = None  # the annotator's score: 0 = speech unrelated to what is seen
    mood: str = ""
    mood_moments: list[FVMoment] = Field(default_factory=list)
    narrative: list[FVMoment] = Field(default_factory=list)


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


def _optional_ts(value: str | None) -> float | None:
    return None if value in (None, "") else parse_timestamp(value)


def _scene(raw: _RawScene) -> FVScene:
    """The builders' view of a validated scene (times in seconds); raises ValueError on a bad timestamp."""
    acts = [FVActivity(description=a.description, start=_optional_ts(a.timestamp and a.timestamp.start_timestamp),
                       end=_optional_ts(a.timestamp and a.timestamp.end_timestamp)) for a in raw.activities]
    mood = raw.mood or _RawMood()
    return FVScene(start=parse_timestamp(raw.timestamps.start_timestamp),
                   end=parse_timestamp(raw.timestamps.end_timestamp), title=raw.title, activities=acts,
                   audio_visual_correlation=raw.audioVisualCorrelation, mood=mood.description,
                   mood_moments=[FVMoment(t=_optional_ts(k.timestamp), text=k.changeDescription)
                                 for k in mood.keyMoments],
                   narrative=[FVMoment(t=_optional_ts(n.timestamp), text=n.description)
                              for n in raw.narrativeProgression])


def _scene_error_field(exc: Exception, where: str, raw: dict) -> str:
    """The dotted field of a scene that failed, for the error message."""
    if isinstance(exc, ValidationError):
        return f"{where}.{_first_error(exc)[0]}"
    ts = raw.get("timestamps") or {}
    for key in ("start_timestamp", "end_timestamp"):
        try:
            parse_timestamp(ts.get(key))
        except ValueError:
            return f"{where}.timestamps.{key}"
    return where


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
        try:
            scene = _scene(_RawScene.model_validate(sc))
        except (ValidationError, ValueError) as exc:
            msg = _first_error(exc)[1] if isinstance(exc, ValidationError) else str(exc)
            return AnnotationError(file, row, _scene_error_field(exc, where, sc), msg)
        if scene.end <= scene.start:
            return AnnotationError(file, row, f"{where}.timestamps",
                                   f"end {scene.end} is not after start {scene.start}")
        scenes.append(scene)
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


SHARD_SUFFIXES = (".parquet", ".arrow")


def finevideo_inputs(path: str | Path) -> tuple[str, list[Path]]:
    """What a FineVideo input names: ``("shards", files)`` for a shard, a glob of shards or a folder holding them
    (the hub layout ``data/train-XXXXX-of-01357.parquet``, searched recursively), or ``("exported", [folder])`` for
    the dataset card's export (``videos/<name>.mp4`` + ``metadata/<name>.json``), or ``("flat", [folder])`` for a
    folder of ``<name>.mp4`` + ``<name>.json``.

    Raises:
        FileNotFoundError: nothing readable there, saying what was looked for.
    """
    text = str(path)
    if any(c in text for c in "*?["):
        import glob

        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if p.endswith(SHARD_SUFFIXES))
        if not files:
            raise FileNotFoundError(f"{text}: the pattern matches no .parquet/.arrow shard")
        return "shards", files
    path = Path(path)
    if path.is_file():
        if path.suffix not in SHARD_SUFFIXES:
            raise FileNotFoundError(f"{path}: a FineVideo file input must be a .parquet or .arrow shard")
        return "shards", [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: FineVideo input does not exist (give parquet shards, a folder of them, or "
                                "a folder with videos/ and metadata/)")
    shards = sorted(p for p in path.rglob("*") if p.suffix in SHARD_SUFFIXES and p.is_file())
    if shards:
        return "shards", shards
    if (path / "metadata").is_dir() and (path / "videos").is_dir():
        return "exported", [path]
    if any(path.glob("*.json")):
        return "flat", [path]
    raise FileNotFoundError(f"{path}: no .parquet/.arrow shard (searched recursively), no videos/ + metadata/ "
                            "folders and no <name>.json + <name>.mp4 files; download FineVideo as shards "
                            "(data/train-*.parquet) or export it as the dataset card shows")


def _iter_json_folder(meta_dir: Path, video_dir: Path) -> Iterator[FineVideoClip | AnnotationError]:
    for row, js in enumerate(sorted(meta_dir.glob("*.json"))):
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            yield AnnotationError(js, exc.lineno, "<json>", f"not valid JSON ({exc.msg})")
            continue
        yield _parse_fv_json(meta, str((video_dir / f"{js.stem}.mp4").resolve()), f"fv_{js.stem}", js, row)


def _iter_shard(path: Path, cache_dir: Path) -> Iterator[FineVideoClip | AnnotationError]:
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


def iter_finevideo(path: str | Path, cache_dir: str | Path) -> Iterator[FineVideoClip | AnnotationError]:
    """Read FineVideo videos from any layout :func:`finevideo_inputs` accepts.

    Shard rows carry the mp4 as bytes; each is written once to ``cache_dir/<id>.mp4`` (kept across builds) and the
    record points at that file. ``row`` is the 0-based row of its shard, or the file's index in its folder.
    """
    kind, files = finevideo_inputs(path)
    if kind == "exported":
        yield from _iter_json_folder(files[0] / "metadata", files[0] / "videos")
    elif kind == "flat":
        yield from _iter_json_folder(files[0], files[0])
    else:
        for shard in files:
            yield from _iter_shard(shard, Path(cache_dir))


# ----------------------------------------------------------------------------------------------------------------
# llava_video (external preference set)


class LlavaPreference(BaseModel):
    """A general video preference. Fields as LLaVA-Hound's ``sft_dpo_17k.jsonl`` (ShareGPTVideo/
    train_video_and_instruction, ``video_instruction/train/dpo/``) writes them: ``id``, ``prompt``, ``answer`` (the
    reference), ``chosen``, ``rejected``, their scores, and ``video``: a name under the training video folder, a
    folder of JPEG frames there (the release ships frames) or an mp4. Other fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    prompt: str = Field(min_length=1)
    answer: str | None = None
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


def _llava_video(folder: Path, name: str) -> Path:
    """``folder/name`` as LLaVA's loaders join it; a bare name may also be ``name.mp4`` there."""
    path = folder / name
    if not path.exists() and not path.suffix and (folder / f"{name}.mp4").is_file():
        return (folder / f"{name}.mp4").resolve()
    return path.resolve()


def iter_llava_video(path: str | Path, video_folder: str | Path | None = None) -> Iterator[LlavaItem | AnnotationError]:
    """Read a video preference JSONL; ``video`` is resolved against ``video_folder`` (LLaVA's ``--video_folder``;
    default the JSONL's folder). Errors name file, line and field."""
    path = Path(path)
    folder = Path(video_folder) if video_folder is not None else path.parent
    for item in iter_jsonl_models(path, LlavaPreference, "llava_video"):
        if isinstance(item, AnnotationError):
            yield item
            continue
        lineno, rec = item
        yield LlavaItem(record=rec, path=_llava_video(folder, rec.video), file=path, line=lineno)
