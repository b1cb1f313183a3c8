"""Lexicon, phoneme segmentation, phonemic edit distance (PED) and option sets: everything but audio and images.

Callable without a synthesiser given phoneme segments, so validity checks (and the text-only baselines) run on
option sets alone. Spec: shared/spec/spectrogram_mcq.md, "Dataset" and "Validity".

Segmentation (what PED counts): eSpeak NG's own phoneme segmentation (``espeak-ng --ipa --sep=_``), one segment per
eSpeak phoneme, so affricates (``tʃ``), diphthongs (``aɪ``), long vowels (``iː``) and r-coloured vowels (``ɜː``)
are single segments; the stress marks ``ˈ``/``ˌ`` are dropped (stress is suprasegmental, not a phoneme). PED is the
Levenshtein distance over these segments with unit costs: ship /ʃ ɪ p/ vs sheep /ʃ iː p/ = 1.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from importlib import resources
from typing import Sequence

import numpy as np

STRESS = ("ˈ", "ˌ")
OPTIONS_PER_ITEM = 4  # A-D (spec: "Four answer options")


@dataclass(frozen=True)
class LexiconEntry:
    """One packaged word: spelling, Zipf frequency (wordfreq 3.1.1) and 1-based line number (stable item id)."""

    word: str
    zipf: float
    rank: int


def load_lexicon() -> list[LexiconEntry]:
    """The packaged English lexicon (``data_builders/assets/words_en.tsv``), most frequent first.

    Provenance and licence: ``data_builders/assets/derive_words_en.py``.
    """
    text = resources.files("data_builders").joinpath("assets/words_en.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    return [LexiconEntry(word=r["word"], zipf=float(r["zipf"]), rank=i + 1) for i, r in enumerate(rows)]


def segments(espeak_ipa: str) -> tuple[str, ...]:
    """Phoneme segments of one ``espeak-ng --ipa --sep=_`` output: split on ``_``, stress marks removed."""
    out = []
    for seg in espeak_ipa.strip().split("_"):
        for mark in STRESS:
            seg = seg.replace(mark, "")
        if seg:
            out.append(seg)
    return tuple(out)


def ped(a: Sequence[str], b: Sequence[str]) -> int:
    """Phonemic edit distance: Levenshtein distance over phoneme segments (unit insert/delete/substitute)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _encode(segs: Sequence[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Segments as a padded int matrix (-1 = pad) and their lengths, for the vectorised one-vs-many PED."""
    vocab: dict[str, int] = {}
    width = max(len(s) for s in segs)
    mat = np.full((len(segs), width), -1, dtype=np.int32)
    for i, s in enumerate(segs):
        mat[i, :len(s)] = [vocab.setdefault(p, len(vocab)) for p in s]
    return mat, np.array([len(s) for s in segs], dtype=np.int32)


def ped_one_to_many(query: np.ndarray, qlen: int, mat: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """PED of one encoded word against many (rows of ``mat``), vectorised over rows (same DP as :func:`ped`)."""
    n, width = mat.shape
    prev = np.tile(np.arange(width + 1, dtype=np.int32), (n, 1))
    out = np.where(qlen == 0, lens, 0).astype(np.int32)
    for i in range(1, qlen + 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        sub = prev[:, :-1] + (mat != query[i - 1])
        for j in range(1, width + 1):
            cur[:, j] = np.minimum(np.minimum(prev[:, j] + 1, cur[:, j - 1] + 1), sub[:, j - 1])
        prev = cur
    if qlen:
        out = prev[np.arange(n), lens]
    return out


def cluster_option_sets(segs: Sequence[tuple[str, ...]], seed: int, pool: int = 12) -> list[tuple[int, ...]]:
    """Partition words into option sets of four mutually close words (by PED); returns index 4-tuples.

    Why clusters and not "the answer's three nearest neighbours": nearest-neighbour distractors make the answer
    the medoid of its options, a shortcut a text-only model learns (spec, Validity; the paper's Mechanism 2).
    Here every member of a set is the answer of exactly one item (see :func:`assign_items`), so any function of
    the option set alone (centrality, length, frequency, spelling) is right on exactly one of the set's four items.

    Greedy: words are visited in a seeded random order; each unassigned word takes, among its ``pool`` nearest
    unassigned words, the three that minimise the sum of the six pairwise PEDs of the four. Words beyond the last
    multiple of four are left out.
    """
    n = len(segs)
    mat, lens = _encode(segs)
    rng = np.random.default_rng(seed)
    free = np.ones(n, dtype=bool)
    sets: list[tuple[int, ...]] = []
    for i in rng.permutation(n):
        if not free[i] or free.sum() < OPTIONS_PER_ITEM:
            continue
        free[i] = False
        cand = np.flatnonzero(free)
        d = ped_one_to_many(mat[i], int(lens[i]), mat[cand], lens[cand])
        # Random tie-break so equal-distance neighbours are not picked by lexicon (frequency) order.
        order = np.lexsort((rng.random(len(cand)), d))[:pool]
        near = [int(cand[k]) for k in order]
        dist = {(a, b): ped(segs[a], segs[b]) for a, b in itertools.combinations(near, 2)}
        di = {a: int(d[k]) for a, k in zip(near, order)}
        best = min(itertools.combinations(near, OPTIONS_PER_ITEM - 1),
                   key=lambda t: sum(di[a] for a in t) + sum(dist[(a, b)] if (a, b) in dist else dist[(b, a)]
                                                            for a, b in itertools.combinations(t, 2)))
        for a in best:
            free[a] = False
        sets.append((int(i), *best))
    return sets


def nearest_neighbour_sets(segs: Sequence[tuple[str, ...]], seed: int) -> list[tuple[int, ...]]:
    """The naive design the spec warns against: each word with its three nearest words (answer first).

    Kept only as the positive control of the validity checks: the centrality baseline must beat chance on it.
    """
    mat, lens = _encode(segs)
    rng = np.random.default_rng(seed)
    sets = []
    for i in range(len(segs)):
        d = ped_one_to_many(mat[i], int(lens[i]), mat, lens)
        d[i] = 1 << 20
        near = np.lexsort((rng.random(len(segs)), d))[:OPTIONS_PER_ITEM - 1]
        sets.append((i, *map(int, near)))
    return sets


@dataclass(frozen=True)
class ItemPlan:
    """One item before rendering: its word index, option word indices in display order, and the answer position."""

    word: int
    options: tuple[int, ...]
    answer: int
    split: str


def assign_items(sets: Sequence[tuple[int, ...]], seed: int, test_fraction: float = 0.2,
                 answer_first: bool = False) -> list[ItemPlan]:
    """Turn option sets into items: each member of a set is the answer of one item.

    Answer positions: per set, the four items put their answers at a random permutation of A-D, so positions are
    exactly balanced overall and within each split; the other options are shuffled. The split is drawn per set,
    so train and test are disjoint by word (answers and distractors alike). ``answer_first`` (with
    :func:`nearest_neighbour_sets`) makes one item per set, the set's first word, for the positive control.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed + 1)
    n_test = max(1, round(len(sets) * test_fraction))
    test_sets = set(rng.permutation(len(sets))[:n_test].tolist())
    plans = []
    for s_idx, members in enumerate(sets):
        split = "test" if s_idx in test_sets else "train"
        answers = members[:1] if answer_first else members
        positions = rng.permutation(OPTIONS_PER_ITEM)
        for k, word in enumerate(answers):
            others = [m for m in members if m != word]
            rng.shuffle(others)
            pos = int(positions[k]) if not answer_first else int(rng.integers(OPTIONS_PER_ITEM))
            opts = others[:pos] + [word] + others[pos:]
            plans.append(ItemPlan(word=word, options=tuple(opts), answer=pos, split=split))
    return plans
