"""``python -m data_builders export DIR --out OUT``: a built folder in LLaMA-Factory's sharegpt format.

Writes ``OUT/harken_sft.json`` and ``OUT/harken_dpo.json`` (the layout of the public data release of "When Vision
Speaks for Sound"): each row has
``messages`` whose user turn starts with ``<video><audio>``, ``videos`` (the untouched source clip) and ``audios``
(the intervened track as a wav under ``OUT/audios/``, at the build's sample rate); DPO rows add ``chosen`` and
``rejected`` assistant messages. ``OUT/dataset_info.json`` registers both for LLaMA-Factory (set its
``use_audio_in_video: false``, since the audio comes from the wav, not from the clip's own track).

Limits of the format: a DPO pair whose two sides hear different audio cannot be written (one ``audios`` list per
row); such pairs are counted in ``skipped_pairs``. FineVideo rows point at the scene files the build cut (packet
copies), so the ``videos`` file and the wav cover the same span.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from data_builders.interventions import Intervention, intervened_audio
from recipes.io import atomic_path, dumps_json, write_text

TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
MEDIA_TAGS = "<video><audio>"


@dataclass(frozen=True)
class ExportResult:
    out: Path
    sft_rows: int
    dpo_rows: int
    audio_files: int
    skipped_pairs: int


@dataclass(frozen=True)
class ExportedRow:
    """A row of an export, parsed back: prompt (without the media tags), answers, files."""

    prompt: str
    answer: str | None
    chosen: str | None
    rejected: str | None
    video: str
    audio: str


def _wav(out: Path, video: str, spec: Intervention, start: float, end: float | None, sr: int,
         max_seconds: float) -> str:
    import soundfile as sf

    key = hashlib.sha1(f"{video}|{spec.model_dump_json()}|{start}|{end}|{sr}".encode()).hexdigest()[:16]
    path = out / "audios" / f"{key}.wav"
    if not path.is_file():
        wave = intervened_audio(video, spec, sr, max_seconds=max_seconds, start=start, end=end)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), wave, sr, subtype="FLOAT")
    return str(path.resolve())


def _write_json(path: Path, obj) -> None:
    write_text(path, dumps_json(obj, ensure_ascii=False, indent=1))


def export_llamafactory(built: str | Path, out: str | Path, sample_rate: int | None = None,
                        progress: bool = True) -> ExportResult:
    """Export ``built`` (a folder written by ``build``) to LLaMA-Factory sharegpt JSON under ``out``.

    Args:
        sample_rate: wav rate; default the build's ``media.sample_rate`` (from its manifest).
    Raises:
        FileNotFoundError: ``built`` is not a complete build.
    """
    from tqdm import tqdm

    from data_builders.build import load_built, record_from_row

    b = load_built(built)
    media = b.manifest.get("media", {})
    sr = sample_rate or int(media.get("sample_rate", 16000))
    max_s = float(media.get("max_clip_seconds", 30.0))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sft_rows, dpo_rows, skipped = [], [], 0
    for row in tqdm(b.sft, desc="export sft", disable=not progress):
        r = record_from_row(row)
        audio = _wav(out, r.video, r.intervention, r.start, r.end, sr, max_s)
        sft_rows.append({"id": r.id, "messages": [{"role": "user", "content": MEDIA_TAGS + r.prompt},
                                                  {"role": "assistant", "content": r.answer}],
                         "videos": [r.video], "audios": [audio]})
    for row in tqdm(b.dpo, desc="export dpo", disable=not progress):
        r = record_from_row(row)
        if r.chosen_intervention != r.rejected_intervention:
            skipped += 1
            continue
        audio = _wav(out, r.video, r.chosen_intervention, r.start, r.end, sr, max_s)
        dpo_rows.append({"id": r.id, "messages": [{"role": "user", "content": MEDIA_TAGS + r.prompt}],
                         "chosen": {"role": "assistant", "content": r.chosen},
                         "rejected": {"role": "assistant", "content": r.rejected},
                         "videos": [r.video], "audios": [audio]})
    _write_json(out / "harken_sft.json", sft_rows)
    _write_json(out / "harken_dpo.json", dpo_rows)
    _write_json(out / "dataset_info.json", {
        "harken_sft": {"file_name": "harken_sft.json", "formatting": "sharegpt",
                       "columns": {"messages": "messages", "videos": "videos", "audios": "audios"}, "tags": TAGS},
        "harken_dpo": {"file_name": "harken_dpo.json", "formatting": "sharegpt", "ranking": True,
                       "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected",
                                   "videos": "videos", "audios": "audios"}, "tags": TAGS},
    })
    n_audio = len(list((out / "audios").glob("*.wav"))) if (out / "audios").is_dir() else 0
    return ExportResult(out=out, sft_rows=len(sft_rows), dpo_rows=len(dpo_rows), audio_files=n_audio,
                        skipped_pairs=skipped)


def read_export(out: str | Path, dataset: str) -> list[ExportedRow]:
    """Parse ``out/harken_<dataset>.json`` back (``sft`` or ``dpo``), checking the sharegpt shape.

    Raises:
        ValueError: a row that LLaMA-Factory would reject (wrong roles, missing media tags, count mismatch).
    """
    rows = json.loads(Path(out, f"harken_{dataset}.json").read_text(encoding="utf-8"))
    parsed = []
    for i, row in enumerate(rows):
        msgs = row["messages"]
        if not msgs or msgs[0]["role"] != "user" or not msgs[0]["content"].startswith(MEDIA_TAGS):
            raise ValueError(f"row {i}: the first message must be the user's, opening with {MEDIA_TAGS}")
        content = msgs[0]["content"]
        if content.count("<video>") != len(row["videos"]) or content.count("<audio>") != len(row["audios"]):
            raise ValueError(f"row {i}: media tags and media lists disagree")
        if dataset == "sft":
            if len(msgs) != 2 or msgs[1]["role"] != "assistant":
                raise ValueError(f"row {i}: an SFT row is one user and one assistant message")
            parsed.append(ExportedRow(content[len(MEDIA_TAGS):], msgs[1]["content"], None, None, row["videos"][0],
                                      row["audios"][0]))
        else:
            if len(msgs) != 1 or row["chosen"]["role"] != "assistant" or row["rejected"]["role"] != "assistant":
                raise ValueError(f"row {i}: a DPO row is one user message plus assistant chosen/rejected")
            parsed.append(ExportedRow(content[len(MEDIA_TAGS):], None, row["chosen"]["content"],
                                      row["rejected"]["content"], row["videos"][0], row["audios"][0]))
    return parsed
