"""Reference rows of the spectrogram benchmark: what a speech recogniser and people score on the same items.

"Seeing isn't Hearing" sets its vision-language models (about 25%, chance) against people (75%) and an ASR system
(87.56%): the task is solvable from the sound. Both rows appear in every spectrogram report: measured when the
suite is given an ASR checkpoint (``asr``) or a file of human answers (``human``), else as the published figure.

- ASR: any transformers speech-recognition checkpoint (a Whisper model, a CTC model) transcribes each item's audio;
  its pick is the option whose spelling is nearest to the transcript (Levenshtein over letters, ties broken by a
  seeded draw). The pick is the same word under every condition, since both option lists are the same words in
  the same order.
- Human: a CSV of per-item answers (:func:`read_human_answers` documents the columns), scored per condition.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_builders.spectrogram_mcq import SpectrogramItem, ped
from data_builders.spectrogram_mcq.build import LETTERS
from eval.spectrogram_baselines import Accuracy

# Published reference points of "Seeing isn't Hearing" (accuracy on its 4-option items; chance is 25%).
PUBLISHED = {"human": 0.75, "asr": 0.8756}
TINY_ASR = "tiny-whisper"  # reserved name: a random-weight Whisper built offline (tests, demo)


def normalise(text: str) -> str:
    """Lower-case letters and apostrophes only: ``" Sheep."`` -> ``"sheep"``."""
    return re.sub(r"[^a-z']", "", text.lower())


def nearest_option(transcript: str, options: Sequence[str], seed: int = 0) -> int:
    """Index of the option spelled nearest to ``transcript`` (letter Levenshtein after :func:`normalise`); equal
    distances are broken by a draw seeded with the transcript and options, so no position is favoured."""
    said = normalise(transcript)
    dist = np.array([ped(said, normalise(o)) for o in options])
    best = np.flatnonzero(dist == dist.min())
    digest = int(hashlib.sha256("\x1f".join([said, *options]).encode()).hexdigest()[:8], 16)
    return int(np.random.default_rng([seed, digest]).choice(best))


def build_tiny_whisper(out_dir: str | Path | None = None, seed: int = 0) -> Path:
    """A tiny random-weight Whisper (real ``WhisperForConditionalGeneration``, feature extractor and a tokenizer
    trained locally with Whisper's special tokens), saved with ``save_pretrained``; returns the folder. Its
    transcripts are noise: it exercises the ASR reference end to end offline."""
    import json

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)

    from data_builders.spectrogram_mcq import load_lexicon
    from train.backbones import backbone_cache, save_tiny

    out = Path(out_dir) if out_dir is not None else backbone_cache() / TINY_ASR
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=512, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([" ".join(e.word for e in load_lexicon()[:2000])], trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = WhisperTokenizer(vocab=state["vocab"], merges=merges)
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": [s for s in specials
                                                                if s not in tokenizer.get_vocab()]})
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in specials}
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    config = WhisperConfig(vocab_size=(len(tokenizer) + 63) // 64 * 64, num_mel_bins=80, d_model=32,
                           encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
                           max_target_positions=64, pad_token_id=ids["<|endoftext|>"],
                           bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
                           decoder_start_token_id=ids["<|startoftranscript|>"], begin_suppress_tokens=None,
                           suppress_tokens=None)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = ids["<|startoftranscript|>"]
    model.generation_config.forced_decoder_ids = None
    model.generation_config.no_timestamps_token_id = ids["<|notimestamps|>"]
    return save_tiny(model, processor, tokenizer, TINY_ASR, out)


def load_asr(name_or_path: str, device: Any = None):
    """A transformers speech-recognition pipeline for ``name_or_path``: ``tiny-whisper`` (built offline on first
    use), a local folder, or a hub id already in the local Hugging Face cache (nothing downloads).

    Raises:
        FileNotFoundError: a hub id that is not cached, with how to provide it.
    """
    from transformers import pipeline

    from train.backbones import backbone_cache, resolve_backbone

    if name_or_path == TINY_ASR:
        folder = backbone_cache() / TINY_ASR
        if not (folder / "config.json").is_file():
            build_tiny_whisper(folder)
        path = str(folder)
    else:
        path = resolve_backbone(name_or_path)
    return pipeline("automatic-speech-recognition", model=path, device=device)


def transcribe(asr, audio: np.ndarray, sample_rate: int) -> str:
    """The recogniser's text for one mono waveform (English, no timestamps, a few tokens: one word is spoken)."""
    kwargs: dict[str, Any] = {}
    gen = getattr(getattr(asr, "model", None), "generation_config", None)
    if gen is not None and getattr(gen, "lang_to_id", None):  # a multilingual Whisper: do not guess the language
        kwargs["generate_kwargs"] = {"language": "en", "task": "transcribe"}
    if gen is not None:
        kwargs.setdefault("generate_kwargs", {})["max_new_tokens"] = 16
    out = asr({"raw": np.asarray(audio, dtype=np.float32), "sampling_rate": sample_rate}, **kwargs)
    return str(out["text"]).strip()


def human_fields() -> tuple[str, ...]:
    """Columns of a human-answers CSV (see :func:`read_human_answers`)."""
    return ("id", "condition", "answer", "participant")


def read_human_answers(path: str | Path, items: Sequence[SpectrogramItem]) -> tuple[list[dict], list[str]]:
    """Rows of a human-answers CSV, checked against ``items``; returns (answers, skipped rows with reasons).

    Format: a header row, then one row per answer given, with the columns

    - ``id``: the item's id in items.jsonl (e.g. ``w0042``);
    - ``condition``: what the person was shown, one of ``graphemic/spectrogram``, ``graphemic/spectrogram+waveform``,
      ``phonemic/spectrogram``, ``phonemic/spectrogram+waveform``;
    - ``answer``: the option chosen, as its letter ``A``-``D`` (the order in items.jsonl) or as the option's text;
    - ``participant`` (optional): who answered; several people may answer the same item.

    A row naming an unknown item or condition, or an answer that is not an option, is skipped with its line
    number and reason; the rest are scored.
    Raises:
        FileNotFoundError: no such file; ValueError: the header lacks ``id``, ``condition`` or ``answer``.
    """
    from data_builders.spectrogram_mcq import CONDITIONS

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"human answers {path} not found (columns: {', '.join(human_fields())})")
    by_id = {it.id: it for it in items}
    names = {f"{k}/{i}" for k, i in CONDITIONS}
    rows, skipped = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "condition", "answer"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: header lacks {sorted(missing)}; columns are {', '.join(human_fields())}")
        for line, row in enumerate(reader, 2):
            item, cond, answer = by_id.get(row["id"].strip()), row["condition"].strip(), row["answer"].strip()
            if item is None:
                skipped.append(f"{path}:{line}: id {row['id']!r} is not an item of this split")
                continue
            if cond not in names:
                skipped.append(f"{path}:{line}: condition {cond!r} is not one of {sorted(names)}")
                continue
            options = getattr(item.options, cond.split("/")[0])
            pick = LETTERS.index(answer.upper()) if answer.upper() in LETTERS and len(answer) == 1 else (
                options.index(answer) if answer in options else None)
            if pick is None:
                skipped.append(f"{path}:{line}: answer {answer!r} is neither A-D nor one of the options {options}")
                continue
            rows.append({"id": item.id, "condition": cond, "pred": pick, "answer": item.answer,
                         "participant": (row.get("participant") or "").strip()})
    return rows, skipped


def human_reference(path: str | Path, items: Sequence[SpectrogramItem]) -> dict:
    """Accuracy (with n and 95% interval) of supplied human answers, per condition and over all, with mean PED of
    the chosen options; ``skipped`` lists rows that could not be scored."""
    rows, skipped = read_human_answers(path, items)
    by_id = {it.id: it for it in items}
    per: dict[str, dict] = {}
    for cond in sorted({r["condition"] for r in rows}):
        mine = [r for r in rows if r["condition"] == cond]
        per[cond] = Accuracy.of([r["pred"] == r["answer"] for r in mine]).as_dict()
        per[cond]["mean_ped_selected"] = float(np.mean([by_id[r["id"]].ped[r["pred"]] for r in mine]))
    overall = Accuracy.of([r["pred"] == r["answer"] for r in rows]).as_dict()
    return {"source": str(path), "conditions": per, "all": overall,
            "participants": len({r["participant"] for r in rows}), "skipped": skipped[:20],
            "n_skipped": len(skipped)}


def published(kind: str) -> dict:
    """The published figure of ``kind`` (``human`` or ``asr``) as a reference row with no n and no interval."""
    return {"published": True, "accuracy": PUBLISHED[kind], "n": None, "ci95": None,
            "source": "Seeing isn't Hearing"}
