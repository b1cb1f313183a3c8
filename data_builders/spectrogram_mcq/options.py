"""Lexicon, phoneme segmentation, phonemic edit distance (PED) and option sets: everything but audio and images.

Callable without a synthesiser given phoneme segments, so validity checks (and the text-only baselines) run on
option sets alone.

Two ways to choose distractors (``DISTRACTOR_MODES``):

- ``groups``: words are partitioned into groups of four mutually close words and each member of a group is the
  answer of one item (:func:`cluster_option_sets`, :func:`assign_items`). Any property of the options alone is right
  on exactly one item of four by construction.
- ``nearest``: as "Seeing isn't Hearing" builds its items, each word's three distractors are among its closest
  words by PED (:func:`nearest_distractor_plans`). Which three of the closest, and ties between equally close
  words, are settled by a seeded draw steered so that no options-only property (see :func:`option_properties`)
  picks the answer more often than one time in four.

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
OPTIONS_PER_ITEM = 4  # A-D: four answer options
DISTRACTOR_MODES = ("groups", "nearest")
NEAREST_POOL = 10  # nearest mode: distractors come from the answer's 10 closest words (3 = exactly the 3 nearest)
# Properties of one option that a text-only model could read off the options alone (the text-only baselines test
# each of them): centrality among the four by PED and by spelling distance, length in letters and phonemes, Zipf
# frequency, spelling irregularity |letters - phonemes|.
PROPERTIES = ("ped_centrality", "spelling_centrality", "letters", "phonemes", "zipf", "irregularity")


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


def option_properties(words: Sequence[str], phonemes: Sequence[Sequence[str]], zipf: dict[str, float]) -> np.ndarray:
    """(4, len(PROPERTIES)) properties of the options of one item: negated total PED and total spelling distance
    to the other options (higher = more central), letters, phonemes, Zipf frequency (0 when unknown),
    |letters - phonemes|."""
    rows = []
    for k, (w, p) in enumerate(zip(words, phonemes)):
        rows.append([-sum(ped(p, q) for j, q in enumerate(phonemes) if j != k),
                     -sum(ped(w, v) for j, v in enumerate(words) if j != k),
                     len(w), len(p), zipf.get(w, 0.0), abs(len(w) - len(p))])
    return np.array(rows, dtype=np.float64)


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
    the medoid of its options, a shortcut a text-only model learns (the bias "Seeing isn't Hearing" finds its finetuned models exploiting).
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
    """The literal nearest-neighbour design: each word with its three nearest words (answer first).

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


def ped_matrix(segs: Sequence[tuple[str, ...]]) -> np.ndarray:
    """All pairwise PEDs (n x n, int16): 4,068 words take seconds and 33 MB. Any sequences work (letters too)."""
    mat, lens = _encode(segs)
    return np.stack([ped_one_to_many(mat[i], int(lens[i]), mat, lens) for i in range(len(segs))]).astype(np.int16)


def _test_words(dist: np.ndarray, rng: np.random.Generator, test_fraction: float, block: int = 16) -> np.ndarray:
    """Boolean mask of test words: blocks of ``block`` mutually close words (a random word and its nearest
    unassigned words) until the test share is reached, so a test word keeps close neighbours within its own split
    (splitting word by word would leave test words only far neighbours)."""
    n = len(dist)
    want = max(OPTIONS_PER_ITEM, round(n * test_fraction))
    test = np.zeros(n, dtype=bool)
    for i in rng.permutation(n):
        if test.sum() >= want:
            break
        if test[i]:
            continue
        free = np.flatnonzero(~test)
        take = min(block, want - int(test.sum()))
        near = free[np.lexsort((rng.random(len(free)), dist[i, free]))][:take]
        test[near] = True
    return test


def conditional_logit(x: np.ndarray, y: np.ndarray, steps: int = 500, lr: float = 0.5,
                      l2: float = 1e-3) -> np.ndarray:
    """Fit w of a softmax over the options of ``x @ w`` (x: (N, 4, F), y: answer positions) by gradient descent."""
    w = np.zeros(x.shape[-1])
    for _ in range(steps):
        logits = x @ w
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        w -= lr * (np.einsum("no,nof->f", p, x) / len(y) + l2 * w)
    return w


@dataclass(frozen=True)
class _Candidates:
    """Every admissible distractor triple of one answer: word indices, options' properties (answer first), and
    the summed PED of the three distractors."""

    answer: int
    triples: np.ndarray      # (m, 3) word indices
    props: np.ndarray        # (m, 4, P)
    closeness: np.ndarray    # (m,)


def _candidates(answer: int, near: np.ndarray, dist: np.ndarray, spelling: np.ndarray,
                word_props: np.ndarray) -> _Candidates:
    cand = np.concatenate([[answer], near])
    spell = spelling[np.ix_(cand, cand)].astype(np.float64)
    phon = dist[np.ix_(cand, cand)].astype(np.float64)
    local = np.array(list(itertools.combinations(range(1, len(cand)), OPTIONS_PER_ITEM - 1)))
    sets = np.concatenate([np.zeros((len(local), 1), dtype=int), local], axis=1)              # (m, 4), answer first
    central = [-m[sets[:, :, None], sets[:, None, :]].sum(-1) for m in (phon, spell)]
    props = np.concatenate([np.stack(central, -1), word_props[cand][sets]], axis=-1)
    return _Candidates(answer, cand[local], props, phon[0][local].sum(axis=1))


def _picks(props: np.ndarray, scale: np.ndarray, adversaries: Sequence[np.ndarray]) -> np.ndarray:
    """(m, K) chance that each options-only pick (highest and lowest of every property, then the highest score of
    each fitted conditional logit) chooses the answer (option 0), ties broken at random."""
    z = (props - props.mean(axis=1, keepdims=True)) / scale
    scores = np.concatenate([props, -props] + [(z @ w)[..., None] for w in adversaries], axis=-1)
    best = scores == scores.max(axis=1, keepdims=True)
    return best[:, 0, :] / best.sum(axis=1)


def nearest_distractor_plans(segs: Sequence[tuple[str, ...]], words: Sequence[str], zipf: dict[str, float],
                             seed: int, test_fraction: float = 0.2, pool: int = NEAREST_POOL,
                             rounds: int = 3) -> list[ItemPlan]:
    """One item per word, its three distractors among its ``pool`` closest words by PED in the same split.

    As "Seeing isn't Hearing" chooses distractors (by PED to the answer), with two guards its description leaves
    open. The split is drawn first (blocks of close words, :func:`_test_words`), so train and test are disjoint by
    word. And which three of the closest words are taken (ties between equally close words included) is a seeded
    draw steered against options-only shortcuts: the answer's three nearest words alone make it the most central
    option about three times in four (a text-only model learns that). Item after item, the triple is taken that
    keeps every options-only pick (the highest and the lowest of each of :data:`PROPERTIES`) right on as close to
    one item in four as the pool allows, then the closest such triple, then a seeded random one. Combinations of
    properties are covered by ``rounds``: after each round a conditional logit is fit on all items and its pick
    joins the steered ones. Answer positions are a shuffled, exactly balanced sequence per split.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n = len(segs)
    if n < 2 * OPTIONS_PER_ITEM:
        raise ValueError(f"nearest distractors need at least {2 * OPTIONS_PER_ITEM} words, got {n}")
    dist = ped_matrix(segs).astype(np.int32)
    spelling = ped_matrix([tuple(w) for w in words])  # the same Levenshtein over letters
    rng = np.random.default_rng([seed, 7])
    test = _test_words(dist, rng, test_fraction)
    letters = np.array([len(w) for w in words], dtype=np.float64)
    phones = np.array([len(s) for s in segs], dtype=np.float64)
    word_props = np.stack([letters, phones, np.array([zipf.get(w, 0.0) for w in words]),
                           np.abs(letters - phones)], axis=1)
    splits = []
    for split, in_split in (("train", ~test), ("test", test)):
        members = np.flatnonzero(in_split)
        if len(members) < OPTIONS_PER_ITEM:
            raise ValueError(f"the {split} split has {len(members)} words; nearest distractors need at least 4")
        order = rng.permutation(members)
        cands = []
        for i in order:
            others = members[members != i]
            near = others[np.lexsort((rng.random(len(others)), dist[i, others]))][:max(pool, 3)]
            cands.append(_candidates(int(i), near, dist, spelling, word_props))
        splits.append((split, rng.permutation(np.resize(np.arange(OPTIONS_PER_ITEM), len(members))), cands))
    scale = np.concatenate([c.props - c.props.mean(axis=1, keepdims=True) for _, _, cs in splits for c in cs])
    scale = scale.reshape(-1, scale.shape[-1]).std(axis=0) + 1e-9
    adversaries: list[np.ndarray] = []
    for round_ in range(rounds):
        draw = np.random.default_rng([seed, 8])  # the same tie-break draws every round
        chosen = []
        for split, positions, cands in splits:
            hits = np.zeros(2 * len(PROPERTIES) + len(adversaries))
            for t, c in enumerate(cands):
                h = _picks(c.props, scale, adversaries)
                balance = np.round(np.abs(hits + h - 0.25 * (t + 1)).sum(axis=1), 6)
                k = int(np.lexsort((draw.random(len(h)), c.closeness, balance))[0])
                hits += h[k]
                chosen.append((split, int(positions[t]), c, k))
        if round_ < rounds - 1:
            z = np.stack([c.props[k] for *_, c, k in chosen])
            adversaries.append(conditional_logit((z - z.mean(axis=1, keepdims=True)) / scale,
                                                 np.zeros(len(z), dtype=int)))
    plans = []
    for split, pos, c, k in chosen:
        rest = [int(x) for x in draw.permutation(c.triples[k])]
        plans.append(ItemPlan(word=c.answer, options=tuple(rest[:pos] + [c.answer] + rest[pos:]), answer=pos,
                              split=split))
    return plans
