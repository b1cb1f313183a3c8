"""``python -m data_builders build RECIPE``: every dataset a recipe's ``data`` section names, into ``data/<name>/``.

Layout of a built folder (what the trainer and the Thud eval read; :func:`load_built` opens it):

- ``sft/``, ``dpo/``: HF datasets (``save_to_disk``); a row is ``SFTSample``/``PreferencePair.model_dump(mode="json")``
  with absolute media paths and intervention specs, never media bytes (:func:`record_from_row` turns it back).
- ``test_clips.jsonl``: annotations of the held-out clips (absolute ``video``), disjoint from training by clip.
- ``manifest.json``: counts per source and split, seed, recipe hash, input hashes, and the build key.
- ``quarantine.jsonl``: every input record left out, with file, line/row, id, field, reason and message.
- ``media/finevideo/``: FineVideo videos written out of shards (once); ``media/finevideo/segments/``: each training
  scene copied packet for packet into its own file, from the key frame before it (a JSON side file keeps the
  offset); ``.work/``: resumable caches.
- ``spectrogram_mcq/``: the spectrogram benchmark (items.jsonl, wavs, images) when the data section asks for it;
  ``sft`` then holds :class:`~data_builders.records.ImageSFTSample` rows drawn from its train split.

Same inputs (recipe data/media/seed, input files, clip files' sizes and times) give the same build key: a second
run does nothing. An interrupted run resumes: clip probes are appended one by one to ``.work/probe.jsonl``, synth
clips and FineVideo files already on disk are kept. Outputs are written to ``.staging/`` and moved in as one unit:
the old manifest goes first, the new one last, so a folder with a manifest always holds the build it describes.
A lock file (``.build.lock``) refuses a second build of the same folder while one runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from data_builders.annotations import AnnotatedClip, AnnotationError, ClipAnnotation, write_jsonl
from data_builders.pairs import (PAIR_BUILDERS, BuildInputs, Clip, Segment, build_pairs, sft_samples,
                                 shift_eligible)
from data_builders.records import ImageSFTSample, PreferencePair, SFTSample
from recipes import io
from recipes.cli import UserError
from recipes.paths import PathError, command, media_path, project_root

# Bump when the row format or the builders change meaning: old builds are then rebuilt, not reused.
BUILD_FORMAT = 1
# Annotated times may exceed the probed duration by this much (container durations round to a frame or an AAC
# packet) before the record counts as "times outside the clip".
TIME_TOLERANCE_S = 0.05
# An annotated duration longer than the file by more than this (seconds, or this share of the file) is a wrong
# annotation: the eval would draw offsets the clip cannot hold.
DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION = 1.0, 0.1
STAGING, LOCK = ".staging", ".build.lock"
# What a build writes; they move from .staging into the folder together, manifest last.
OUTPUTS = ("sft", "dpo", "test_clips.jsonl", "quarantine.jsonl")


class QuarantineRecord(BaseModel):
    """An input record left out of the build, and why. ``reason`` is a short tag, ``message`` what to do."""

    model_config = ConfigDict(extra="forbid")

    file: str
    line: int | None = None
    id: str | None = None
    field: str | None = None
    source: str | None = None  # set when the record is left out of one source only (e.g. ctp)
    reason: str
    message: str


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build` did: the folder, whether it skipped (already built), and the manifest."""

    out: Path
    skipped: bool
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Built:
    """A built folder opened by :func:`load_built`."""

    sft: Any  # datasets.Dataset
    dpo: Any  # datasets.Dataset
    test_clips: list[ClipAnnotation]
    manifest: dict[str, Any]


# ----------------------------------------------------------------------------------------------------------------
# hashing and paths


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _stat_key(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def input_hash(path: Path) -> str:
    """Content hash of an input file (size + mtime for files over 256 MiB and for folders, whose members count)."""
    if path.is_dir():
        blob = "\n".join(f"{p.name}:{_stat_key(p)}" for p in sorted(path.iterdir()))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
    if path.stat().st_size > (256 << 20):
        return "stat:" + _stat_key(path)
    return _sha256_file(path)


def resolve_input(path: str, recipe_file: Path) -> Path:
    """A recipe path: absolute as given, else relative to the recipe's folder, else to the project root."""
    p = Path(path)
    if p.is_absolute():
        return p
    for base in (recipe_file.parent, project_root()):
        if (base / p).exists():
            return (base / p).resolve()
    raise FileNotFoundError(f"{recipe_file}: data input '{path}' is neither under {recipe_file.parent} nor under "
                            f"{project_root()}; fix the path in the recipe's data section")


class BuildLockedError(UserError):
    """Another build is writing the same folder."""


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.build.lock`` for the duration of a build. The operating system drops the lock when its process
    dies (``flock``), so a killed build never leaves the folder locked.

    Raises:
        BuildLockedError: another live process holds it, with its pid.
    """
    import fcntl

    path = out / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise BuildLockedError(f"{out}: another build (pid {holder}) is writing this folder; wait for it to "
                                   "finish, or build into another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def commit_outputs(staging: Path, out: Path) -> None:
    """Move a finished build from ``staging`` into ``out``: drop the old manifest first (from here until the last
    step the folder reads as "not built"), swap each output in, then move the new manifest in last."""
    (out / "manifest.json").unlink(missing_ok=True)
    for name in OUTPUTS:
        if (staging / name).is_dir():
            io.swap_folder(staging / name, out / name)
        else:
            os.replace(staging / name, out / name)
    os.replace(staging / "manifest.json", out / "manifest.json")
    shutil.rmtree(staging, ignore_errors=True)


def resolve_finevideo(path: str, recipe_file: Path) -> str:
    """A FineVideo input as the reader takes it: a glob of shards stays a pattern, anchored like other paths."""
    if not any(c in path for c in "*?["):
        return str(resolve_input(path, recipe_file))
    import glob

    if Path(path).is_absolute():
        return path
    for base in (recipe_file.parent, project_root()):
        if glob.glob(str(base / path), recursive=True):
            return str(base / path)
    raise FileNotFoundError(f"{recipe_file}: finevideo pattern '{path}' matches nothing under {recipe_file.parent} "
                            f"or {project_root()}; fix the path in the recipe's data section")


def _stable_u(*parts: object) -> float:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little") / 2.0 ** 64


# ----------------------------------------------------------------------------------------------------------------
# probing clips


class ProbeResult(BaseModel):
    key: str
    ok: bool
    duration: float = 0.0
    reason: str = ""
    message: str = ""


def probe_clip(path: str | Path, sample_rate: int) -> ProbeResult:
    """Check a clip is usable: it exists, has a video stream whose packets reach its end, and an audio stream that
    decodes for its whole declared length. Returns the duration, or the reason it is not usable
    (``missing_file``, ``no_audio_stream``, ``no_video_stream``, ``corrupt_or_truncated``). Never raises for a bad clip."""
    import av

    from data_builders.media import MediaError, NoVideoStreamError, TruncatedMediaError, _open, load_audio

    path = Path(path)
    key = f"{path}|{_stat_key(path)}"
    try:
        with _open(path) as container:
            if not container.streams.video:
                raise NoVideoStreamError(path, "has no video stream")
            vs = container.streams.video[0]
            last = 0.0
            try:
                for pkt in container.demux(vs):
                    if pkt.pts is not None:
                        last = max(last, float((pkt.pts + (pkt.duration or 0)) * vs.time_base))
            except av.error.FFmpegError as exc:
                raise TruncatedMediaError(path, f"video stream is corrupt ({exc})") from exc
        _, duration = load_audio(path, sample_rate)
        if duration <= 0:
            raise TruncatedMediaError(path, "container declares no duration")
        if last < duration - 0.5:
            raise TruncatedMediaError(path, f"video packets end at {last:.2f}s of a {duration:.2f}s clip")
        return ProbeResult(key=key, ok=True, duration=duration)
    except MediaError as exc:
        return ProbeResult(key=key, ok=False, reason=exc.reason, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken clip must never crash a build
        return ProbeResult(key=key, ok=False, reason="corrupt_or_truncated", message=f"{path}: {exc}")


def probe_pictures(path: Path) -> tuple[str, str] | None:
    """``(reason, message)`` when a clip that needs only pictures (an external preference's mp4, silent or not, or
    frame folder) cannot be read, else None. Such clips reach training with a silent track when they have none."""
    from data_builders.media import MediaError, probe_visual

    try:
        probe_visual(path)
    except MediaError as exc:
        return exc.reason, str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken clip must never crash a build
        return "corrupt_or_truncated", f"{path}: {exc}"
    return None


def cut_segment(clip, scene, folder: Path, max_seconds: float) -> Segment:
    """Cut a FineVideo scene out of its video into ``folder`` (packet copy, written once; a JSON side file keeps
    the key-frame offset) and return the :class:`Segment` that points at the cut. The span is the scene, at most
    ``max_seconds`` long counted from the cut's first frame, so every part of it is decoded in training."""
    from data_builders.media import cut_span

    dst = folder / f"{clip.id}@{scene.start:.3f}-{scene.end:.3f}_{max_seconds:g}s.mp4"
    side = dst.with_suffix(".json")
    if dst.is_file() and side.is_file():
        offset = float(json.loads(side.read_text(encoding="utf-8"))["offset"])
    else:
        offset = cut_span(clip.video, dst, scene.start, scene.end, max_len=max_seconds)
        _write_json(side, {"offset": offset, "source": clip.video, "start": scene.start, "end": scene.end})
    return Segment(clip=clip, scene=scene, video=str(dst.resolve()), offset=offset,
                   span=(scene.start, min(scene.end, offset + max_seconds)))


class ProbeCache:
    """Per-clip probe results appended to a JSONL as they come, so an interrupted build does not probe again."""

    def __init__(self, path: Path):
        self.path = path
        self._known: dict[str, ProbeResult] = {}
        if path.is_file():
            for raw in path.read_text(encoding="utf-8").splitlines():
                try:
                    r = ProbeResult.model_validate_json(raw)
                except ValueError:
                    continue  # a line cut by a crash
                self._known[r.key] = r
        path.parent.mkdir(parents=True, exist_ok=True)

    def get(self, video: Path, sample_rate: int) -> ProbeResult:
        key = f"{video}|{_stat_key(video)}"
        if key not in self._known:
            res = probe_clip(video, sample_rate)
            self._known[key] = res
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(res.model_dump_json() + "\n")
        return self._known[key]


# ----------------------------------------------------------------------------------------------------------------
# the build


def _annotation_reason(err: AnnotationError) -> str:
    if err.reason:
        return err.reason
    return "times_outside_clip" if "after the clip's end" in str(err) else "invalid_annotation"


def _raw_id(file: str, line: int) -> str | None:
    """The ``id`` written on line ``line`` of a JSONL, when that line parses (so quarantine rows name the clip)."""
    if not file.endswith(".jsonl"):
        return None
    try:
        with open(file, encoding="utf-8-sig", errors="replace") as fh:  # name the id even on a mangled line
            for i, raw in enumerate(fh, start=1):
                if i == line:
                    value = json.loads(raw).get("id")
                    return str(value) if value is not None else None
    except (OSError, ValueError, AttributeError):
        return None
    return None


def _quarantine_error(err: AnnotationError) -> QuarantineRecord:
    return QuarantineRecord(file=err.file, line=err.line, id=_raw_id(err.file, err.line), field=err.field,
                            reason=_annotation_reason(err), message=str(err))


def _save_dataset(rows: list[dict], folder: Path, record_type: type[BaseModel]) -> None:
    from datasets import Dataset

    if rows:
        ds = Dataset.from_list(rows)
    else:  # an empty dataset still has the record's columns
        ds = Dataset.from_dict({name: [] for name in record_type.model_fields})
    with io.staged_folder(folder) as tmp:
        # One shard even when empty: datasets writes no arrow file for an empty set otherwise, and cannot load it.
        ds.save_to_disk(str(tmp), num_shards=1 if not rows else None)


def _write_json(path: Path, obj: Any) -> None:
    io.write_json(path, obj, sort_keys=True)


def _checked_media(file: Path, line: int, rid: str, video: str,
                   roots: list[Path]) -> tuple[Path | None, QuarantineRecord | None]:
    """The media file a record's ``video`` names, lexically absolute and inside the record file's folder or a media
    root, or the quarantine record saying why not (escaping path, NUL byte, symlink loop)."""
    where = dict(file=str(file), line=line, id=rid, field="video")
    try:
        path = media_path(file, video, roots)
    except PathError as exc:
        reason = "nul_in_path" if "NUL" in str(exc) else "media_outside_roots"
        return None, QuarantineRecord(**where, reason=reason, message=f"{file}:{line}: video {exc}")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, QuarantineRecord(**where, reason="symlink_loop",
                                          message=f"{path}: symbolic links loop; point the link at a real file")
    return path, None


def build(recipe: str | Path, out: str | Path | None = None, overrides: Iterable[str] = (),
          progress: bool = True, force: bool = False) -> BuildResult:
    """Build the datasets of a recipe under a lock (see :func:`_build` for the arguments and what it returns).

    Raises:
        BuildLockedError: another build is writing the same folder. Otherwise as :func:`_build`.
    """
    from recipes.schema import load_recipe

    rec = load_recipe(recipe, overrides)
    out = Path(out) if out is not None else project_root() / "data" / rec.name
    out.mkdir(parents=True, exist_ok=True)
    with build_lock(out):
        return _build(recipe, out, overrides, progress, force)


def _build(recipe: str | Path, out: str | Path | None = None, overrides: Iterable[str] = (),
           progress: bool = True, force: bool = False) -> BuildResult:
    """Build the datasets of a recipe (module docstring for the layout).

    Args:
        recipe: recipe name or file (``demo``, ``recipes/demo.yaml``).
        out: output folder; default ``<project root>/data/<recipe name>`` (:mod:`recipes.paths`).
        overrides: ``key.path=value`` assignments, as ``--set`` on the command line.
        progress: show tqdm bars.
        force: rebuild even when the manifest says the inputs are unchanged.
    Returns:
        :class:`BuildResult`; ``skipped`` is True when nothing had to be done.
    Raises:
        RecipeError: invalid recipe. FileNotFoundError: a named input does not exist. BuildError: a source with no
        eligible input. Broken clips and records never raise: they are quarantined.
    """
    from tqdm import tqdm

    from data_builders.readers import iter_annotations, iter_finevideo, iter_llava_video, iter_transition_times
    from recipes.schema import load_recipe, resolve_path

    overrides = list(overrides)
    rec = load_recipe(recipe, overrides)
    recipe_file = resolve_path(recipe).resolve()
    data = rec.data
    out = Path(out) if out is not None else project_root() / "data" / rec.name
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    work.mkdir(exist_ok=True)

    # -- inputs -------------------------------------------------------------------------------------------------
    ann_files = [resolve_input(p, recipe_file) for p in data.annotations]
    if data.synth is not None:
        from data_builders.synth import synthesize

        synth_seed = rec.seed if data.synth.seed is None else data.synth.seed
        wanted_synth = {"clips": data.synth.clips, "seed": synth_seed, "test_fraction": data.synth.test_fraction}
        if data.synth.world != "demo":  # the demo world's marker stays as it was, so its builds are not redone
            wanted_synth["world"] = data.synth.world
        marker = work / "synth.json"
        synth_ann = out / "synth" / "annotations.jsonl"
        done = (marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted_synth
                and synth_ann.is_file())
        if done:  # rendering every frame again just to find the files present would make a no-op run slow
            done = all((synth_ann.parent / json.loads(line)["video"]).is_file()
                       for line in synth_ann.read_text(encoding="utf-8").splitlines() if line.strip())
        if not done:
            synthesize(out / "synth", clips=data.synth.clips, seed=synth_seed,
                       test_fraction=data.synth.test_fraction, progress=progress, world=data.synth.world)
            _write_json(marker, wanted_synth)
        ann_files.append(synth_ann.resolve())
    tt_inputs = [(resolve_input(t.file, recipe_file), t) for t in data.transition_times]
    from data_builders.media import MediaError
    from data_builders.readers import finevideo_inputs, iter_oops, oops_files
    from recipes.data import LlavaInput

    fv_inputs = [resolve_finevideo(p, recipe_file) for p in data.finevideo]
    oops_inputs = [(resolve_input(o.root, recipe_file), o) for o in data.oops]
    llava_inputs = [LlavaInput(file=x) if isinstance(x, str) else x for x in data.llava_video]
    llava_files = [(resolve_input(x.file, recipe_file),
                    resolve_input(x.video_folder, recipe_file) if x.video_folder else None) for x in llava_inputs]

    quarantine: list[QuarantineRecord] = []
    annotated: list[AnnotatedClip] = []
    media_roots = [resolve_input(r, recipe_file) for r in data.media_roots]

    def _take(item: AnnotatedClip | AnnotationError, roots: list[Path]) -> None:
        if isinstance(item, AnnotationError):
            quarantine.append(_quarantine_error(item))
            return
        video, refused = _checked_media(item.file, item.line, item.record.id, item.record.video, roots)
        if refused is not None:
            quarantine.append(refused)
        else:
            annotated.append(AnnotatedClip(record=item.record, path=video, file=item.file, line=item.line))

    for f in ann_files:
        for item in iter_annotations(f):
            _take(item, media_roots)
    for f, spec in tt_inputs:
        videos = resolve_input(spec.videos, recipe_file) if spec.videos else None
        for item in iter_transition_times(f, videos, audio_event=spec.audio_event, visual_event=spec.visual_event):
            _take(item, [*media_roots, *([videos] if videos else [])])

    for root, spec in oops_inputs:
        events = resolve_input(spec.events, recipe_file) if spec.events else None
        for item in iter_oops(root, events, filtered=spec.filtered, heldout=spec.heldout,
                              audio_event=spec.audio_event, visual_event=spec.visual_event):
            _take(item, [*media_roots, root])
        if events is not None:
            ann_files.append(events)

    all_inputs = [*ann_files, *(f for f, _ in tt_inputs), *(f for p in fv_inputs for f in finevideo_inputs(p)[1]),
                  *(f for root, _ in oops_inputs for f in oops_files(root)), *(f for f, _ in llava_files)]
    input_hashes = {str(p): input_hash(p) for p in all_inputs}
    clip_stats = sorted(f"{a.path}|{_stat_key(a.path)}" for a in annotated)
    data_hash = hashlib.sha256(json.dumps({"data": data.model_dump(mode="json"), "media": rec.media.model_dump(
        mode="json"), "seed": rec.seed}, sort_keys=True).encode()).hexdigest()[:16]
    build_key = hashlib.sha256(
        json.dumps([BUILD_FORMAT, data_hash, input_hashes, clip_stats]).encode()).hexdigest()[:16]
    manifest_path = out / "manifest.json"
    if not force and manifest_path.is_file() and (out / "sft").is_dir() and (out / "dpo").is_dir():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if old.get("build_key") == build_key:
            return BuildResult(out=out, skipped=True, manifest=old)

    # -- probe clips (cached, resumable) ------------------------------------------------------------------------
    probes = ProbeCache(work / "probe.jsonl")
    sr = rec.media.sample_rate
    seen: set[str] = set()
    train_clips: list[Clip] = []
    test_clips: list[ClipAnnotation] = []
    for a in tqdm(annotated, desc="probe clips", disable=not progress):
        r = a.record
        where = dict(file=str(a.file), line=a.line, id=r.id)
        if r.id in seen:
            quarantine.append(QuarantineRecord(**where, field="id", reason="duplicate_id",
                                               message=f"id '{r.id}' appears earlier; ids must be unique"))
            continue
        seen.add(r.id)
        video = a.path
        res = probes.get(video, sr)
        if not res.ok:
            quarantine.append(QuarantineRecord(**where, field="video", reason=res.reason, message=res.message))
            continue
        late = [n for n in ("t_visual", "t_audio") if getattr(r, n) > res.duration + TIME_TOLERANCE_S]
        if late:
            quarantine.append(QuarantineRecord(
                **where, field=late[0], reason="times_outside_clip",
                message=f"{late[0]}={getattr(r, late[0])} lies after the end of the file ({res.duration:.2f}s); "
                        "fix the annotation"))
            continue
        if r.duration > res.duration + max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION * res.duration):
            quarantine.append(QuarantineRecord(
                **where, field="duration", reason="duration_mismatch",
                message=f"duration={r.duration} but the file lasts {res.duration:.2f}s; fix the annotation"))
            continue
        split = r.split or ("test" if _stable_u(rec.seed, "split", r.id) < data.test_fraction else "train")
        if split == "test":
            test_clips.append(r.model_copy(update={"video": str(video), "split": "test",
                                                   "duration": min(r.duration, res.duration)}))
        else:
            train_clips.append(Clip(ann=r, video=str(video), duration=min(res.duration, rec.media.max_clip_seconds)))

    segments: list[Segment] = []
    fv_clips = {"train": 0, "test": 0}
    for f in fv_inputs:
        for item in tqdm(iter_finevideo(f, out / "media" / "finevideo"), desc=f"finevideo {Path(f).name}",
                         disable=not progress):
            if isinstance(item, AnnotationError):
                quarantine.append(_quarantine_error(item))
                continue
            res = probes.get(Path(item.video), sr)
            if not res.ok:
                quarantine.append(QuarantineRecord(file=item.file, line=item.row, id=item.id, field="mp4",
                                                   reason=res.reason, message=res.message))
                continue
            split = "test" if _stable_u(rec.seed, "split", item.id) < data.test_fraction else "train"
            fv_clips[split] += 1
            for i, sc in enumerate(item.scenes):
                if sc.end > res.duration + TIME_TOLERANCE_S:
                    quarantine.append(QuarantineRecord(
                        file=item.file, line=item.row, id=item.id, reason="times_outside_clip",
                        field=f"json.content_metadata.scenes[{i}].timestamps.end_timestamp",
                        message=f"scene ends at {sc.end:.2f}s, after the video's end ({res.duration:.2f}s)"))
                elif split == "train":
                    try:
                        seg = cut_segment(item, sc, out / "media" / "finevideo" / "segments",
                                          rec.media.max_clip_seconds)
                        cut = probes.get(Path(seg.video), sr)
                    except (MediaError, ValueError) as exc:
                        cut = ProbeResult(key="", ok=False, reason=getattr(exc, "reason", "corrupt_or_truncated"),
                                          message=str(exc))
                    if not cut.ok:
                        quarantine.append(QuarantineRecord(
                            file=item.file, line=item.row, id=item.id, reason=cut.reason, message=cut.message,
                            field=f"json.content_metadata.scenes[{i}]"))
                        continue
                    segments.append(seg)

    llava = []
    for f, video_folder in llava_files:
        for item in iter_llava_video(f, video_folder):
            if isinstance(item, AnnotationError):
                quarantine.append(_quarantine_error(item))
                continue
            # The JSONL's `video` is relative to its video folder (LLaVA's --video_folder), which counts as a root.
            roots = [*media_roots, *([video_folder] if video_folder is not None else [])]
            _, refused = _checked_media(item.file, item.line, item.id, str(item.path), roots)
            if refused is not None:
                quarantine.append(refused)
                continue
            problem = probe_pictures(item.path)
            if problem is not None:
                quarantine.append(QuarantineRecord(file=str(item.file), line=item.line, id=item.id, field="video",
                                                   reason=problem[0], message=problem[1]))
                continue
            llava.append(item)

    wanted = {k for part in (data.sft, data.dpo) for k, n in part.items() if n > 0}
    if "ctp" in wanted:
        _, short = shift_eligible(train_clips, data.shift)
        for c in short:
            quarantine.append(QuarantineRecord(
                file=str(c.video), id=c.id, field="t_audio", source="ctp", reason="clip_too_short_for_shift",
                message=f"no offset in bands {data.shift.bands} keeps the sound (t_audio={c.ann.t_audio}) inside "
                        f"this {c.duration:.2f}s clip; left out of ctp only"))

    spectrogram_items, spectrogram_splits, spectrogram_ped = None, {}, None
    if data.spectrogram_mcq is not None:  # resumable on its own: words already rendered are kept
        from data_builders.spectrogram_mcq import build as build_spectrogram_mcq
        from data_builders.spectrogram_mcq import build_summary, read_items

        spec = data.spectrogram_mcq
        spectrogram_items = spec.items_path(out)
        build_spectrogram_mcq(spectrogram_items.parent, words=spec.words, seed=rec.seed, workers=spec.workers,
                              test_fraction=spec.test_fraction, progress=progress, distractors=spec.distractors)
        built_items = read_items(spectrogram_items)
        spectrogram_splits = dict(sorted(Counter(it.split for it in built_items).items()))
        spectrogram_ped = build_summary(built_items)["mean_distractor_ped"]

    # -- pairs and samples ----------------------------------------------------------------------------------------
    inputs = BuildInputs(clips=train_clips, segments=segments, llava=llava, shift=data.shift, seed=rec.seed,
                         questions=data.questions, audio_contrast=data.audio_contrast)
    names = sorted(PAIR_BUILDERS)
    dpo: list[PreferencePair] = []
    sft: list[SFTSample | ImageSFTSample] = []
    for source, n in tqdm(sorted(data.dpo.items()), desc="dpo pairs", disable=not progress):
        dpo += build_pairs(source, inputs, n, np.random.default_rng([rec.seed, 1, names.index(source)]))
    for source, n in tqdm(sorted(data.sft.items()), desc="sft samples", disable=not progress):
        if source == "spectrogram_mcq":
            sft += spectrogram_samples(spectrogram_items, n, np.random.default_rng([rec.seed, 2, len(names)]))
        else:
            sft += sft_samples(source, inputs, n, np.random.default_rng([rec.seed, 2, names.index(source)]))
    # Mixed order, so a trainer's `limit` or a partial epoch sees every source.
    order_rng = np.random.default_rng([rec.seed, 3])
    dpo = [dpo[int(i)] for i in order_rng.permutation(len(dpo))]
    sft = [sft[int(i)] for i in order_rng.permutation(len(sft))]

    import datasets

    staging = out / STAGING
    if staging.exists():  # a build that died before its commit: start its outputs again
        shutil.rmtree(staging)
    staging.mkdir()
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    if not progress:
        datasets.utils.disable_progress_bars()
    try:
        _save_dataset([r.model_dump(mode="json") for r in sft], staging / "sft",
                      ImageSFTSample if data.sft.get("spectrogram_mcq") else SFTSample)
        _save_dataset([r.model_dump(mode="json") for r in dpo], staging / "dpo", PreferencePair)
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
    write_jsonl(staging / "test_clips.jsonl", test_clips)
    write_jsonl(staging / "quarantine.jsonl", quarantine)

    def _count(rows) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in rows:
            c[r.source] = c.get(r.source, 0) + 1
        return dict(sorted(c.items()))

    reasons: dict[str, int] = {}
    for q in quarantine:
        reasons[q.reason] = reasons.get(q.reason, 0) + 1
    manifest = {
        "format": BUILD_FORMAT, "recipe": rec.name, "recipe_file": str(recipe_file), "overrides": overrides,
        "recipe_hash": rec.hash(), "data_hash": data_hash, "build_key": build_key, "seed": rec.seed,
        "inputs": input_hashes,
        "counts": {"train": {"sft": _count(sft), "dpo": _count(dpo)},
                   "test": {"clips": len(test_clips), "finevideo_clips": fv_clips["test"]}},
        "clips": {"train": len(train_clips), "test": len(test_clips), "finevideo_train": fv_clips["train"],
                  "finevideo_segments_train": len(segments), "llava_video": len(llava),
                  "oops": sum(1 for a in annotated if a.record.source == "oops")},
        "rows": {"sft": len(sft), "dpo": len(dpo)},
        "spectrogram_mcq": None if spectrogram_items is None else {
            "items": str(spectrogram_items.resolve()),
            "items_per_split": spectrogram_splits, "distractors": data.spectrogram_mcq.distractors,
            "mean_distractor_ped": spectrogram_ped},
        "quarantined": {"total": len(quarantine), "by_reason": dict(sorted(reasons.items()))},
        "media": rec.media.model_dump(mode="json"),
    }
    _write_json(staging / "manifest.json", manifest)
    commit_outputs(staging, out)  # manifest last: its presence with this key means the build is complete
    return BuildResult(out=out, skipped=False, manifest=manifest)


def spectrogram_samples(items_path: Path, n: int, rng: np.random.Generator) -> list[ImageSFTSample]:
    """Exactly ``n`` image SFT rows from the benchmark's train split (every item under every condition), drawn
    without repeats until all are used, then again (as the clip sources cycle their inputs).

    Raises:
        BuildError: the train split is empty.
    """
    from data_builders.pairs import BuildError
    from data_builders.spectrogram_mcq import sft_records

    records = sft_records(items_path, "train")
    if n > 0 and not records:
        raise BuildError(f"source 'spectrogram_mcq': {items_path} has no train items; raise data.spectrogram_mcq.words")
    out: list[ImageSFTSample] = []
    while len(out) < n:
        for i in rng.permutation(len(records))[: n - len(out)]:
            r = records[int(i)]
            out.append(r.model_copy(update={"id": f"spectrogram_mcq-{len(out):05d}-{r.source_id}"}))
    return out


# ----------------------------------------------------------------------------------------------------------------
# reading a build back


def record_from_row(row: dict[str, Any], base_dir: str | Path | None = None) -> SFTSample | PreferencePair:
    """Turn a row of a built dataset back into its record (``PreferencePair`` when it has ``chosen``).

    Arrow fills keys of ``meta`` that other rows have with None; those are dropped. Relative ``video`` paths are
    made absolute against ``base_dir`` when given.
    """
    row = dict(row)
    row["meta"] = {k: v for k, v in (row.get("meta") or {}).items() if v is not None}
    for key in ("intervention", "chosen_intervention", "rejected_intervention"):
        if isinstance(row.get(key), dict):
            row[key] = {k: v for k, v in row[key].items() if v is not None}
    if base_dir is not None and not Path(row["video"]).is_absolute():
        row["video"] = str((Path(base_dir) / row["video"]).resolve())
    return PreferencePair.model_validate(row) if "chosen" in row else SFTSample.model_validate(row)


def load_test_clips(folder: str | Path) -> list[ClipAnnotation]:
    """The held-out clips of a build (``folder/test_clips.jsonl``; absolute ``video`` paths), for the Thud eval.

    Raises:
        FileNotFoundError: no such file (run ``python -m data_builders build RECIPE``).
    """
    path = Path(folder) / "test_clips.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; build it with `{command('data_builders build RECIPE')}`")
    return [ClipAnnotation.model_validate_json(raw) for raw in path.read_text(encoding="utf-8").splitlines()
            if raw.strip()]


def load_built(folder: str | Path) -> Built:
    """Open a built folder: ``Built(sft, dpo, test_clips, manifest)``.

    Raises:
        FileNotFoundError: the folder has no complete build (run ``python -m data_builders build RECIPE``).
    """
    from datasets import load_from_disk

    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"{folder}: no manifest.json; build it with `{command('data_builders build RECIPE')}`")
    tests = load_test_clips(folder) if (folder / "test_clips.jsonl").is_file() else []
    return Built(sft=load_from_disk(str(folder / "sft")), dpo=load_from_disk(str(folder / "dpo")), test_clips=tests,
                 manifest=json.loads((folder / "manifest.json").read_text(encoding="utf-8")))


def load_records(folder: str | Path, dataset: str) -> list[SFTSample] | list[PreferencePair]:
    """All records of ``folder/<dataset>`` (``sft`` or ``dpo``) as typed records."""
    from datasets import load_from_disk

    return [record_from_row(r) for r in load_from_disk(str(Path(folder) / dataset))]
