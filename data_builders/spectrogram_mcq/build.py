"""``python -m data_builders spectrogram-mcq``: the whole build, the item record, prompts and SFT rows.

Order: lexicon -> eSpeak NG IPA (one batched call) -> option sets (options.py) -> speech and images in parallel
(render.py, skipped when already on disk) -> ``items.jsonl`` written atomically last.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from data_builders.annotations import write_jsonl
from data_builders.records import ImageSFTSample
from data_builders.spectrogram_mcq.options import (DISTRACTOR_MODES, NEAREST_POOL, OPTIONS_PER_ITEM, LexiconEntry, assign_items,
                                                   cluster_option_sets, load_lexicon, nearest_distractor_plans, ped,
                                                   segments)
from data_builders.spectrogram_mcq.render import RenderParams, espeak_version, phonemize, render_word

FULL_WORDS = 4068  # 4,068 English words, the count of "Seeing isn't Hearing"
OptionKind = Literal["graphemic", "phonemic"]
ImageKind = Literal["spectrogram", "spectrogram+waveform"]
CONDITIONS: tuple[tuple[OptionKind, ImageKind], ...] = (
    ("graphemic", "spectrogram"), ("graphemic", "spectrogram+waveform"),
    ("phonemic", "spectrogram"), ("phonemic", "spectrogram+waveform"))


class Options(BaseModel):
    """The same four options written two ways; ``answer`` indexes both lists."""

    model_config = ConfigDict(extra="forbid")
    graphemic: list[str]
    phonemic: list[str]


class SpectrogramItem(BaseModel):
    """One item (docs/formats.md, "Spectrogram benchmark item"). Additions to the contract: ``phonemes`` and
    ``option_phonemes`` (the PED segments of the answer and of each option), ``combined`` (the stacked
    spectrogram+waveform image) and ``option_set`` (the id of the four-word set the item shares with three others)."""

    model_config = ConfigDict(extra="allow")

    id: str
    word: str
    ipa: str
    phonemes: list[str]
    audio: str
    spectrogram: str
    waveform: str
    combined: str
    options: Options
    option_phonemes: list[list[str]]
    answer: int
    ped: list[float]
    params: dict
    split: Literal["train", "test"]
    option_set: int


@dataclass(frozen=True)
class BuildResult:
    """What a build did: items written, words rendered now, words found already rendered, words left over."""

    out: Path
    items: int
    rendered: int
    skipped: int
    dropped_words: int


def _words(n: int, voice: str) -> tuple[list[LexiconEntry], list[tuple[str, ...]], list[str]]:
    """The first ``n`` lexicon words whose eSpeak NG pronunciation is one word and new (homophones dropped)."""
    lex = load_lexicon()
    ipas = phonemize([e.word for e in lex], voice)
    chosen, segs, raw, seen = [], [], [], set()
    for entry, ipa in zip(lex, ipas):
        s = segments(ipa)
        # Two segmentations can print the same IPA (t_ʃ / tʃ): keyed on the printed form, options never repeat.
        if not s or " " in ipa.strip() or "".join(s) in seen:
            continue
        seen.add("".join(s))
        chosen.append(entry)
        segs.append(s)
        raw.append(ipa.strip())
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise ValueError(f"the packaged lexicon yields {len(chosen)} distinct pronunciations, fewer than --words {n}")
    return chosen, segs, raw


def plan_items(words: int = FULL_WORDS, seed: int = 0, test_fraction: float = 0.2,
               params: RenderParams | None = None, distractors: str = "groups",
               pool: int = NEAREST_POOL) -> list[SpectrogramItem]:
    """The items of a build without rendering anything (needs eSpeak NG for the IPA only, one fast call).

    Validity checks and text-only baselines run on these directly. ``distractors``: ``groups`` (option sets of
    four close words, each member the answer once; ``words`` is rounded down to a multiple of 4) or ``nearest``
    (each word's distractors among its ``pool`` closest words by PED, as "Seeing isn't Hearing" does; one item per
    word).
    Raises:
        ValueError: fewer than 8 words, an unknown mode; RuntimeError: eSpeak NG missing (with the install command).
    """
    if words < 2 * OPTIONS_PER_ITEM:
        raise ValueError(f"--words must be at least {2 * OPTIONS_PER_ITEM} (one train and one test option set)")
    if distractors not in DISTRACTOR_MODES:
        raise ValueError(f"distractors must be one of {list(DISTRACTOR_MODES)}, got {distractors!r}")
    params = params or RenderParams(synthesiser=espeak_version())
    entries, segs, _ = _words(words, params.voice)
    if distractors == "nearest":
        zipf = {e.word: e.zipf for e in entries}
        plans = nearest_distractor_plans(segs, [e.word for e in entries], zipf, seed, test_fraction, pool)
        set_of = {p.word: k for k, p in enumerate(sorted(plans, key=lambda p: p.word))}  # every item its own set
    else:
        sets = cluster_option_sets(segs, seed)
        plans = assign_items(sets, seed, test_fraction)
        set_of = {w: s for s, members in enumerate(sets) for w in members}
    ids = [f"w{e.rank:04d}" for e in entries]
    record = params.record()
    items = []
    for p in plans:
        i = p.word
        items.append(SpectrogramItem(
            id=ids[i], word=entries[i].word, ipa="".join(segs[i]), phonemes=list(segs[i]),
            audio=f"audio/{ids[i]}.wav", spectrogram=f"images/{ids[i]}_spec.png",
            waveform=f"images/{ids[i]}_wave.png", combined=f"images/{ids[i]}_both.png",
            options=Options(graphemic=[entries[o].word for o in p.options],
                            phonemic=["".join(segs[o]) for o in p.options]),
            option_phonemes=[list(segs[o]) for o in p.options], answer=p.answer,
            ped=[float(ped(segs[o], segs[i])) for o in p.options], params=record,
            split=p.split, option_set=set_of[i]))
    items.sort(key=lambda it: it.id)
    return items


def build(out: str | Path, words: int = FULL_WORDS, seed: int = 0, workers: int = 2, test_fraction: float = 0.2,
          progress: bool = True, distractors: str = "groups") -> BuildResult:
    """Build the benchmark into ``out``: items.jsonl, manifest.json (:func:`build_summary`), audio/*.wav,
    images/*_{spec,wave,both}.png.

    Resumable: words whose four files exist are not rendered again; every file is written to a temporary name and
    renamed, and items.jsonl is written last.
    Args:
        words: lexicon words to use (most frequent first, homophones dropped); rounded down to a multiple of 4.
        seed: option sets, answer positions and the split.
        workers: rendering processes.
        test_fraction: share of words in the test split (drawn by option set, or by block of close words).
        distractors: ``groups`` or ``nearest`` (see :func:`plan_items`).
    Raises:
        RuntimeError: eSpeak NG missing (with the install command) or failing.
        ValueError: bad ``words``/``test_fraction``.
    """
    out = Path(out)
    params = RenderParams(synthesiser=espeak_version())
    items = plan_items(words, seed, test_fraction, params, distractors)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(it.id, it.word, out, params) for it in items]
    done_before = sum(all((out / f).is_file() for f in (it.audio, it.spectrogram, it.waveform, it.combined))
                      for it in items)
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="spectrogram-mcq", unit="word", disable=not progress)
    if workers > 1:
        # fork where the platform has it: spawned workers re-import librosa and matplotlib (~25 s on 2 busy cores,
        # measured), a third of a small build; the builder has started no threads before this point.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            for _ in pool.imap_unordered(render_word, jobs, chunksize=8):
                bar.update()
    else:
        for job in jobs:
            render_word(job)
            bar.update()
    bar.close()
    write_jsonl(out / "items.jsonl", items)
    summary = build_summary(items) | {"distractors": distractors, "words": words, "seed": seed,
                                      "test_fraction": test_fraction}
    tmp = out / "manifest.tmp.json"
    tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "manifest.json")
    return BuildResult(out=out, items=len(items), rendered=len(jobs) - done_before, skipped=done_before,
                       dropped_words=words - len(items))


def build_summary(items: list[SpectrogramItem]) -> dict:
    """What a build's manifest states about its items: counts and answer positions per split, and the mean PED
    from answer to distractor (the difficulty the distractor mode gives; one PED unit = one phoneme inserted,
    deleted or substituted), overall and per split."""
    def mean_ped(its: list[SpectrogramItem]) -> float | None:
        d = [p for it in its for k, p in enumerate(it.ped) if k != it.answer]
        return round(sum(d) / len(d), 4) if d else None

    splits = sorted({it.split for it in items})
    by = {s: [it for it in items if it.split == s] for s in splits}
    return {"items": len(items), "items_per_split": {s: len(v) for s, v in by.items()},
            "answer_positions": {s: [sum(it.answer == k for it in v) for k in range(OPTIONS_PER_ITEM)]
                                 for s, v in by.items()},
            "mean_distractor_ped": mean_ped(items),
            "mean_distractor_ped_per_split": {s: mean_ped(v) for s, v in by.items()}}


def read_items(path: str | Path, split: str | None = None) -> list[SpectrogramItem]:
    """Items of ``items.jsonl`` (optionally one split). Raises ValueError naming the line of a bad record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; build it with `python -m data_builders spectrogram-mcq --out "
                                f"{path.parent}`")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = SpectrogramItem.model_validate(json.loads(line))
        except Exception as exc:
            raise ValueError(f"{path}:{n}: not a spectrogram MCQ item: {exc}") from exc
        if split is None or item.split == split:
            items.append(item)
    return items


LETTERS = "ABCD"
_WHAT = {"graphemic": ("words", "word"), "phonemic": ("IPA transcriptions", "transcription")}
_SHOWN = {"spectrogram": "The image is a spectrogram of one spoken English word.",
          "spectrogram+waveform": "The image shows one spoken English word: its spectrogram (top) and its "
                                  "waveform (bottom).",
          "blank": "The image is blank.",
          "audio": "Listen to the recording of one spoken English word.",
          "none": "Someone spoke one English word."}


def prompt(options: list[str], option_kind: OptionKind, shown: str) -> str:
    """The question for one item, shared by evaluation and finetuning so both show the model the same text.

    ``shown``: spectrogram | spectrogram+waveform | blank | audio | none (options only).
    """
    plural, singular = _WHAT[option_kind]
    lines = [_SHOWN[shown], f"Which of these {plural} is it?"]
    lines += [f"{LETTERS[k]}. {o}" for k, o in enumerate(options)]
    lines.append(f"Answer with the {singular}.")
    return "\n".join(lines)


def sft_records(items_path: str | Path, split: str = "train",
                conditions: tuple[tuple[OptionKind, ImageKind], ...] = CONDITIONS) -> list[ImageSFTSample]:
    """SFT conversations for finetuning, as the trainer's rows: one per item and condition, answer = the right
    option's text, ``source_id`` the item's id, ``meta["condition"]`` e.g. ``"graphemic/spectrogram"``.

    The spectrogram+waveform condition uses the stacked image (``combined``), as evaluation does.
    """
    root = Path(items_path).parent
    records = []
    for item in read_items(items_path, split):
        for kind, image in conditions:
            opts = getattr(item.options, kind)
            path = item.spectrogram if image == "spectrogram" else item.combined
            records.append(ImageSFTSample(id=f"{item.id}/{kind}/{image}", source="spectrogram_mcq", source_id=item.id,
                                          images=[str((root / path).resolve())], prompt=prompt(opts, kind, image),
                                          answer=opts[item.answer], meta={"condition": f"{kind}/{image}"}))
    return records
