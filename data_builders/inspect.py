"""``python -m data_builders inspect SOURCE ...``: what a build would take from a downloaded source, before the build.

A source is a FineVideo download (parquet shards, a folder or glob of them, or the card's ``videos/`` +
``metadata/`` export), an Oops download (the folder holding ``annotations/`` and ``oops_video/``), a video
preference JSONL (LLaVA-Hound's ``sft_dpo_17k.jsonl``; its ``--video-folder``) or an annotation JSONL. The report
says how many records are readable, how many would be quarantined and why (with examples naming file, line and
field), and how many clips or segments each data source could draw from, with the same readers, probes and
eligibility rules as ``build``.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_builders.annotations import AnnotationError
from recipes.media import MediaSettings

EXAMPLES_PER_REASON = 3


@dataclass
class InspectReport:
    """What :func:`inspect_source` found. ``eligible`` maps each source name to its pool size."""

    source: str
    kind: str
    readable: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    eligible: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_problem(self, reason: str, message: str) -> None:
        self.quarantined[reason] = self.quarantined.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(message)

    def text(self) -> str:
        """The report as a few aligned lines for a terminal."""
        lines = [f"{self.kind}: {self.source}", f"  readable records: {self.readable}"
                 + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(self.splits.items()))})" if self.splits else "")]
        for key, value in self.extra.items():
            lines.append(f"  {key}: {value}")
        total = sum(self.quarantined.values())
        lines.append(f"  would be quarantined: {total}")
        for reason, n in sorted(self.quarantined.items()):
            lines.append(f"    {reason}: {n}")
            lines += [f"      e.g. {m}" for m in self.examples[reason]]
        lines.append("  eligible per source: " + ", ".join(f"{k} {v}" for k, v in self.eligible.items()))
        return "\n".join(lines)


def source_kind(path: str) -> str:
    """``finevideo``, ``oops``, ``llava_video`` or ``annotations``: what ``path`` holds, from its layout."""
    p = Path(path)
    if any(c in path for c in "*?[") or p.suffix in (".parquet", ".arrow"):
        return "finevideo"
    if p.is_dir():
        return "oops" if (p / "annotations" / "transition_times.json").is_file() else "finevideo"
    if p.suffix == ".jsonl" and p.is_file():
        first = next((ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()), "{}")
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            return "annotations"
        return "llava_video" if isinstance(row, dict) and "chosen" in row else "annotations"
    raise FileNotFoundError(f"{path}: not a FineVideo shard/folder, an Oops download folder or a JSONL file")


def _error_line(err: AnnotationError) -> str:
    return str(err)


def _clips_report(report: InspectReport, items, media: MediaSettings, shift) -> None:
    """Probe annotated clips as the build does; fill readable/splits/quarantine and the clip sources' pools."""
    from data_builders.build import TIME_TOLERANCE_S, _annotation_reason, probe_clip
    from data_builders.pairs import BuildInputs, Clip, eligible_counts

    clips, seen = [], set()
    for item in items:
        if isinstance(item, AnnotationError):
            report.add_problem(_annotation_reason(item), _error_line(item))
            continue
        r = item.record
        if r.id in seen:
            report.add_problem("duplicate_id", f"{item.file}:{item.line}: id '{r.id}' appears earlier")
            continue
        seen.add(r.id)
        res = probe_clip(item.path, media.sample_rate)
        if not res.ok:
            report.add_problem(res.reason, f"{item.file}:{item.line}: {res.message}")
            continue
        if max(r.t_visual, r.t_audio) > res.duration + TIME_TOLERANCE_S:
            report.add_problem("times_outside_clip", f"{item.file}:{item.line}: event after the file's end "
                               f"({res.duration:.2f}s)")
            continue
        report.readable += 1
        split = r.split or "unsplit"
        report.splits[split] = report.splits.get(split, 0) + 1
        if split != "test":
            clips.append(Clip(ann=r, video=str(item.path), duration=min(res.duration, media.max_clip_seconds)))
    counts = eligible_counts(BuildInputs(clips=clips, shift=shift))
    report.eligible = {k: counts[k] for k in ("ctp", "orig_sync", "mute", "swap")}


def _finevideo_report(report: InspectReport, path: str, media: MediaSettings) -> None:
    from data_builders.build import TIME_TOLERANCE_S, _annotation_reason, probe_clip
    from data_builders.pairs import BuildInputs, Segment, eligible_counts
    from data_builders.readers import iter_finevideo

    segments, scenes = [], 0
    with tempfile.TemporaryDirectory(prefix="harken-inspect-") as cache:
        for item in iter_finevideo(path, cache):
            if isinstance(item, AnnotationError):
                report.add_problem(_annotation_reason(item), _error_line(item))
                continue
            res = probe_clip(item.video, media.sample_rate)
            if not res.ok:
                report.add_problem(res.reason, f"{item.file}:{item.row}: {res.message}")
                continue
            report.readable += 1
            for i, sc in enumerate(item.scenes):
                scenes += 1
                if sc.end > res.duration + TIME_TOLERANCE_S:
                    report.add_problem("times_outside_clip", f"{item.file}:{item.row}: field 'json.content_metadata"
                                       f".scenes[{i}].timestamps.end_timestamp': scene ends at {sc.end:.2f}s, after "
                                       f"the video's end ({res.duration:.2f}s)")
                    continue
                # Before the build cuts it, a scene's span is its start plus at most the recipe's clip length.
                segments.append(Segment(clip=item, scene=sc, video=item.video, offset=0.0,
                                        span=(sc.start, min(sc.end, sc.start + media.max_clip_seconds))))
    report.extra["scenes"] = scenes
    counts = eligible_counts(BuildInputs(segments=segments))
    report.eligible = {k: counts[k] for k in ("fv_d", "fv_a_l", "fv_t", "fv_c")}


def _llava_report(report: InspectReport, path: str, video_folder: str | None) -> None:
    from data_builders.build import _annotation_reason, probe_pictures
    from data_builders.media import frame_files, has_audio_stream
    from data_builders.readers import iter_llava_video

    forms: Counter = Counter()
    for item in iter_llava_video(path, video_folder):
        if isinstance(item, AnnotationError):
            report.add_problem(_annotation_reason(item), _error_line(item))
            continue
        problem = probe_pictures(item.path)
        if problem is not None:
            report.add_problem(problem[0], f"{item.file}:{item.line}: {problem[1]}")
            continue
        report.readable += 1
        if item.path.is_dir():
            forms["frame folders"] += 1
            forms["frames"] += len(frame_files(item.path))
        else:
            forms["mp4 with sound" if has_audio_stream(item.path) else "mp4 without sound"] += 1
    report.extra["videos"] = ", ".join(f"{k} {v}" for k, v in sorted(forms.items()) if v) or "none"
    report.eligible = {"llava_video": report.readable}


def inspect_source(path: str | Path, *, events: str | None = None, video_folder: str | None = None,
                   media: MediaSettings | None = None, shift=None, filtered: bool = True) -> InspectReport:
    """Read one source as ``build`` would and report what it would take (module docstring).

    Raises:
        FileNotFoundError: the source does not exist or has no known layout.
    """
    from data_builders.readers import iter_annotations, iter_oops
    from recipes.data import ShiftSettings

    path = str(path)
    media = media or MediaSettings()
    shift = shift or ShiftSettings()
    kind = source_kind(path)
    report = InspectReport(source=path, kind=kind)
    if kind == "finevideo":
        _finevideo_report(report, path, media)
    elif kind == "oops":
        stats: dict[str, int] = {}
        _clips_report(report, iter_oops(path, events, filtered=filtered, stats=stats), media, shift)
        report.extra["annotated but outside the official split lists"] = stats.get("outside_splits", 0)
    elif kind == "llava_video":
        _llava_report(report, path, video_folder)
    else:
        _clips_report(report, iter_annotations(path), media, shift)
    return report
