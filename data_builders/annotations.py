"""Typed annotation records ("Annotation JSONL", docs/formats.md) and a reader whose errors name file, line and
field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ClipAnnotation(BaseModel):
    """One source clip with its event times. Unknown fields are kept (contract), ``video`` stays as written."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str = Field(min_length=1)
    video: str = Field(min_length=1)
    source: str = "unknown"
    duration: float = Field(gt=0)
    visual_event: str = ""
    t_visual: float = Field(ge=0)
    audio_event: str = ""
    t_audio: float = Field(ge=0)
    split: Literal["train", "test"] | None = None
    audio_category: str | None = Field(None, description="sound category (e.g. 'glass breaking'); swap donors "
                                                          "must differ in it (event_category)")

    @model_validator(mode="after")
    def _times_inside(self) -> "ClipAnnotation":
        for name in ("t_visual", "t_audio"):
            if getattr(self, name) > self.duration:
                raise ValueError(f"{name}={getattr(self, name)} lies after the clip's end (duration={self.duration})")
        return self


def event_category(ann: ClipAnnotation) -> str:
    """The one key that says which sound a clip's audio event is, for building, materializing and evaluating
    swaps alike: ``audio_category`` when the record has one, else the audio event text, case- and space-insensitive
    ("Thud " and "thud" are one sound). Empty when the clip has no audio event."""
    return " ".join((ann.audio_category or ann.audio_event or "").lower().split())


def is_swap_donor(donor: ClipAnnotation, clip: ClipAnnotation) -> bool:
    """Whether ``donor``'s track may replace ``clip``'s in a Swap: another clip, with an audio event, of another
    category (a clip without an audio event has nothing to donate; the same category would not be a mismatch)."""
    key = event_category(donor)
    return bool(key) and donor.id != clip.id and key != event_category(clip)


_M = TypeVar("_M", bound=BaseModel)


class AnnotationError(ValueError):
    """A record that cannot be used; ``file``, ``line`` and ``field`` say where."""

    def __init__(self, file: str | Path, line: int, field: str, message: str, reason: str | None = None):
        self.file, self.line, self.field = str(file), line, field
        self.reason = reason  # a quarantine tag when the reader knows it (e.g. no_transition); None: inferred
        super().__init__(f"{file}:{line}: field '{field}': {message}")


@dataclass(frozen=True)
class AnnotatedClip:
    """An annotation with its video path resolved against the JSONL's folder."""

    record: ClipAnnotation
    path: Path
    file: Path
    line: int


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "<record>"
    return field, err.get("msg", str(exc))


def iter_jsonl_models(path: str | Path, model: type[_M], what: str) -> Iterator[tuple[int, _M] | AnnotationError]:
    """Yield ``(line number, validated model)`` for each non-blank line of a JSONL file, or an
    :class:`AnnotationError` naming file, line and field for a line that is not a valid ``model``.

    Raises:
        FileNotFoundError: the file does not exist (``what`` names it in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file does not exist")
    with path.open("rb") as fh:  # bytes: one undecodable line is that line's error, not the whole file's
        for lineno, blob in enumerate(fh, start=1):
            if lineno == 1 and blob.startswith(b"\xef\xbb\xbf"):
                blob = blob[3:]  # a UTF-8 byte-order mark (some editors write one) is not part of the record
            try:
                raw = blob.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield AnnotationError(path, lineno, "<encoding>", f"not UTF-8 text (byte {exc.start} of the line)")
                continue
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield AnnotationError(path, lineno, "<json>", f"not valid JSON ({exc.msg})")
                continue
            if not isinstance(data, dict):
                yield AnnotationError(path, lineno, "<record>", "a line must be a JSON object")
                continue
            try:
                yield lineno, model.model_validate(data)
            except ValidationError as exc:
                field, msg = _first_error(exc)
                yield AnnotationError(path, lineno, field, msg)


def read_jsonl_models(path: str | Path, model: type[_M], what: str) -> list[tuple[int, _M]]:
    """Every ``(line number, validated model)`` of a JSONL file, for inputs where one bad line must stop the
    command (evaluation sets, answer files) rather than be quarantined.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: (a ValueError) the first bad line, naming file, line and field.
    """
    rows = []
    for item in iter_jsonl_models(path, model, what):
        if isinstance(item, AnnotationError):
            raise item
        rows.append(item)
    return rows


def iter_annotations(path: str | Path) -> Iterator[AnnotatedClip | AnnotationError]:
    """Yield each line of an annotation JSONL as an :class:`AnnotatedClip`, or an :class:`AnnotationError` for a
    bad line, so that a build can quarantine it and go on. Blank lines are skipped."""
    path = Path(path)
    for item in iter_jsonl_models(path, ClipAnnotation, "annotation"):
        if isinstance(item, AnnotationError):
            yield item
            continue
        lineno, rec = item
        yield AnnotatedClip(record=rec, path=(path.parent / rec.video), file=path, line=lineno)


def read_annotations(path: str | Path) -> list[AnnotatedClip]:
    """Read a whole annotation JSONL, raising the first :class:`AnnotationError` (for strict callers)."""
    out = []
    for item in iter_annotations(path):
        if isinstance(item, AnnotationError):
            raise item
        out.append(item)
    return out


def write_jsonl(path: str | Path, rows) -> None:
    """Write rows (dicts or pydantic models) as JSONL atomically: a crash never leaves half a file."""
    from recipes.io import write_jsonl as _write

    _write(path, rows)
