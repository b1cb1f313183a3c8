"""The offline labelled-sound world: short clips of known sound classes for the diagnostic suites.

The in-distribution classes are the synthetic impacts of :mod:`data_builders.synth` (the sounds the demo trains
on); the out-of-distribution ones are words spoken by eSpeak NG, a pure-tone beep and a hiss of filtered noise.
Each clip is ``CLIP_SECONDS`` long with its sound at a seeded onset over a faint noise floor, so a fragment of it
can miss the sound. Clips carry their class and its hypernym as labels (AudioSet-style: an ontology parent is a
label too), which the hierarchy probes use to find a clip of a broader concept.

Layout written under ``out`` (the formats the suites read from any user folder)::

    sounds/<class>_<k>.wav      mono 16-bit PCM at SAMPLE_RATE
    labels.jsonl                {"file": "sounds/thud_0.wav", "labels": ["thud", "impact"]}
    label_sets.json             {"in_distribution": [...], "out_of_distribution": [...]}
    audio_mcq.jsonl             {"audio": ..., "question": ..., "options": [4 class names], "answer": class name}
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_builders.annotations import write_jsonl
from data_builders.synth import CLASS_BY_NAME, NOISE_FLOOR, impact_sound

VERSION = 2  # bump when the world's sounds or layout change: the cached copy is rebuilt
SAMPLE_RATE = 16000
CLIP_SECONDS = 2.0
# Concept pairs shipped with the package (synonym / hypernym / unrelated), over the world's classes.
CONCEPT_PAIRS = Path(__file__).resolve().parent / "assets" / "concept_pairs.jsonl"
SPOKEN_WORDS = ("hello", "seven", "water", "morning", "yellow", "window")
MCQ_QUESTION = "Which sound is heard in this clip?"


@dataclass(frozen=True)
class SoundClass:
    """A class of the world: its label, its hypernym label, and how a clip of it is made."""

    label: str
    hypernym: str
    source: str  # impact:<synth class> | speech | beep | hiss
    in_distribution: bool


CLASSES: tuple[SoundClass, ...] = (
    SoundClass("thud", "impact", "impact:ball", True),
    SoundClass("knock", "impact", "impact:box", True),
    SoundClass("clink", "impact", "impact:bottle", True),
    SoundClass("clang", "impact", "impact:can", True),
    SoundClass("speech", "human voice", "speech", False),
    SoundClass("beep", "electronic sound", "beep", False),
    SoundClass("hiss", "noise", "hiss", False),
)


def _spoken(word: str, tmp: Path) -> np.ndarray:
    import librosa
    import soundfile as sf

    from data_builders.spectrogram_mcq.render import RenderParams, synthesise

    path = tmp / f"{word}.wav"
    synthesise(word, path, RenderParams())
    y, sr = sf.read(path, dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE) if sr != SAMPLE_RATE else y
    return (0.8 * y / max(1e-6, float(np.max(np.abs(y))))).astype(np.float32)


def _event(cls: SoundClass, k: int, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    """The sound of one clip (before placement): at most ~1 s."""
    if cls.source.startswith("impact:"):
        return impact_sound(CLASS_BY_NAME[cls.source.split(":")[1]], rng, sr=SAMPLE_RATE, seconds=0.8)
    t = np.arange(int(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    if cls.source == "beep":
        f = float(rng.choice([880.0, 1000.0, 1200.0]))
        env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms ramps: no clicks
        return (0.6 * np.sin(2 * np.pi * f * t) * env).astype(np.float32)
    if cls.source == "hiss":
        from scipy.signal import butter, sosfilt

        sos = butter(4, 3000, btype="highpass", fs=SAMPLE_RATE, output="sos")
        y = sosfilt(sos, rng.standard_normal(int(0.7 * SAMPLE_RATE)))
        return (0.5 * y / np.max(np.abs(y))).astype(np.float32)
    return _spoken(SPOKEN_WORDS[k % len(SPOKEN_WORDS)], tmp)


def _clip(cls: SoundClass, k: int, seed: int, tmp: Path) -> np.ndarray:
    rng = np.random.default_rng([seed, CLASSES.index(cls), k])
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    audio = (NOISE_FLOOR * rng.standard_normal(n)).astype(np.float32)
    event = _event(cls, k, rng, tmp)[: n // 2]
    onset = int(rng.integers(int(0.1 * SAMPLE_RATE), n - event.size))
    audio[onset:onset + event.size] += event
    return audio


def _mcq_rows(labels: list[dict], seed: int) -> list[dict]:
    rows = []
    names = [c.label for c in CLASSES]
    for row in labels:
        answer = row["labels"][0]
        rng = random.Random(f"{seed}|mcq|{row['file']}")
        options = [answer] + rng.sample([n for n in names if n != answer], 3)
        rng.shuffle(options)
        rows.append({"audio": row["file"], "question": MCQ_QUESTION, "options": options, "answer": answer})
    return rows


def build_world(out: str | Path, per_class: int = 2, seed: int = 0) -> Path:
    """Write the world into ``out`` (replaced atomically: a crash leaves no half-built folder); returns ``out``.

    Raises:
        RuntimeError: eSpeak NG is missing (its message says how to install it).
    """
    import soundfile as sf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        (work / "sounds").mkdir()
        labels = []
        # Round-robin over classes, so the first N clips (a suite's `limit`) cover as many classes as they can.
        for k in range(per_class):
            for cls in CLASSES:
                rel = f"sounds/{cls.label.replace(' ', '_')}_{k}.wav"
                sf.write(work / rel, _clip(cls, k, seed, work), SAMPLE_RATE, subtype="PCM_16")
                labels.append({"file": rel, "labels": [cls.label, cls.hypernym]})
        for f in work.glob("*.wav"):  # eSpeak scratch files
            f.unlink()
        write_jsonl(work / "labels.jsonl", labels)
        sets = {"in_distribution": [c.label for c in CLASSES if c.in_distribution],
                "out_of_distribution": [c.label for c in CLASSES if not c.in_distribution]}
        (work / "label_sets.json").write_text(json.dumps(sets, indent=1), encoding="utf-8")
        write_jsonl(work / "audio_mcq.jsonl", _mcq_rows(labels, seed))
        (work / "world.json").write_text(json.dumps({"version": VERSION, "per_class": per_class, "seed": seed}),
                                         encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        work.replace(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def default_world(per_class: int = 2, seed: int = 0, root: str | Path | None = None) -> Path:
    """The world for these settings under ``root`` (default ``<cache>/sound_world``, the project cache of recipes.paths), built on first use."""
    from recipes.paths import cache_dir

    folder = Path(root or cache_dir() / "sound_world") / f"v{VERSION}-n{per_class}-seed{seed}"
    if not (folder / "world.json").is_file():
        build_world(folder, per_class=per_class, seed=seed)
    return folder
