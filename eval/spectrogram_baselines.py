"""Text-only baselines of the spectrogram benchmark: how well the options alone predict the answer.

Validity: no property of the options alone (centrality, length,
frequency, spelling regularity) may predict the answer; these baselines must sit at chance (25%). They need no
model and no image: heuristics that pick one option by a property, and a conditional-logit classifier over all
those properties (plus the position) fit on the train split and scored on the test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from data_builders.spectrogram_mcq import SpectrogramItem, load_lexicon
from data_builders.spectrogram_mcq.options import PROPERTIES, conditional_logit, option_properties
from eval.stats import wilson


@dataclass(frozen=True)
class Accuracy:
    """Accuracy with its count and 95% Wilson interval."""

    accuracy: float
    n: int
    ci95: tuple[float, float]

    @staticmethod
    def of(hits: Sequence[bool]) -> "Accuracy":
        n, k = len(hits), int(sum(hits))
        return Accuracy(accuracy=k / n if n else float("nan"), n=n, ci95=wilson(k, n))

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "ci95": list(self.ci95)}


FEATURES = PROPERTIES


def option_features(item: SpectrogramItem, zipf: dict[str, float]) -> np.ndarray:
    """(4, F) option properties (:data:`FEATURES`): centrality (negated total PED, and total spelling distance, to
    the other options), length in letters and phonemes, Zipf frequency, spelling irregularity."""
    return option_properties(item.options.graphemic, item.option_phonemes, zipf)


def _argmax(values: np.ndarray, rng: np.random.Generator) -> int:
    best = np.flatnonzero(values == values.max())
    return int(rng.choice(best))  # random tie-break: a position-based tie-break would add a position signal


def heuristics() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Name -> score of each option from its features (the option with the highest score is picked)."""
    f = {name: i for i, name in enumerate(FEATURES)}
    return {
        "most_central_ped": lambda x: x[:, f["ped_centrality"]],
        "most_central_spelling": lambda x: x[:, f["spelling_centrality"]],
        "longest": lambda x: x[:, f["letters"]],
        "shortest": lambda x: -x[:, f["letters"]],
        "most_phonemes": lambda x: x[:, f["phonemes"]],
        "most_frequent": lambda x: x[:, f["zipf"]],
        "least_frequent": lambda x: -x[:, f["zipf"]],
        "most_regular_spelling": lambda x: -x[:, f["irregularity"]],
    }


def _design(items: Sequence[SpectrogramItem], zipf: dict[str, float]) -> np.ndarray:
    """(N, 4, F + 4): features centred within each option set (only differences between options can matter),
    standardised, plus the position one-hot."""
    x = np.stack([option_features(it, zipf) for it in items])
    x = x - x.mean(axis=1, keepdims=True)
    x = x / (x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-9)
    pos = np.broadcast_to(np.eye(4), (len(items), 4, 4))
    return np.concatenate([x, pos], axis=-1)


def fit_option_classifier(items: Sequence[SpectrogramItem], zipf: dict[str, float], steps: int = 500,
                          lr: float = 0.5, l2: float = 1e-3) -> np.ndarray:
    """Conditional logit (softmax over the four options of w . features) by gradient descent; returns w."""
    return conditional_logit(_design(items, zipf), np.array([it.answer for it in items]), steps, lr, l2)


def text_only_baselines(train: Sequence[SpectrogramItem], test: Sequence[SpectrogramItem],
                        seed: int = 0) -> dict[str, dict]:
    """Every text-only baseline's accuracy on ``test`` (the classifier is fit on ``train``).

    Returns name -> {"accuracy", "n", "ci95"}; chance is 0.25.
    """
    zipf = {e.word: e.zipf for e in load_lexicon()}
    rng = np.random.default_rng(seed)
    feats = [option_features(it, zipf) for it in test]
    out = {}
    for name, score in heuristics().items():
        out[name] = Accuracy.of([_argmax(score(x), rng) == it.answer for x, it in zip(feats, test)]).as_dict()
    out["random"] = Accuracy.of([int(rng.integers(4)) == it.answer for it in test]).as_dict()
    if train and test:
        w = fit_option_classifier(train, zipf)
        logits = _design(test, zipf) @ w
        out["logistic_options_only"] = Accuracy.of(
            [_argmax(row, rng) == it.answer for row, it in zip(logits, test)]).as_dict()
        out["logistic_options_only"]["fit_on"] = len(train)
    return out


def validity(items: Sequence[SpectrogramItem]) -> dict:
    """The checks a benchmark user runs first (docs/spectrogram_mcq.md, "Validity"), on a built item set: answer
    positions per split, distinct options, the answer option is the item's own word (both spellings), one set of
    rendering parameters, train/test disjoint by word, and every text-only baseline with its interval (test split,
    classifier fit on train). ``ok`` is False when a structural check fails or a baseline's interval (corrected for
    the number of baselines) excludes 25%."""
    splits = {s: [it for it in items if it.split == s] for s in ("train", "test")}
    positions = {s: np.bincount([it.answer for it in its], minlength=4).tolist() for s, its in splits.items()}
    problems = []
    for it in items:
        if len(set(it.options.graphemic)) != 4 or len(set(it.options.phonemic)) != 4:
            problems.append(f"{it.id}: repeated option")
        if it.options.graphemic[it.answer] != it.word or it.options.phonemic[it.answer] != it.ipa:
            problems.append(f"{it.id}: the answer option is not the item's word")
    if len({json.dumps(it.params, sort_keys=True) for it in items}) != 1:
        problems.append("items were rendered with different parameters")
    if {it.word for it in splits["train"]} & {it.word for it in splits["test"]}:
        problems.append("a word is in both splits")
    for s, counts in positions.items():
        if counts and max(counts) - min(counts) > 1 + len(splits[s]) // 50:
            problems.append(f"{s}: answer positions unbalanced {counts}")
    base = text_only_baselines(splits["train"], splits["test"] or items)
    # Several baselines are tested at once: with 95% intervals one of nine would miss 25% by chance alone about a
    # third of the time, so each is held to a Bonferroni-corrected interval. "random" is the reference, not a test.
    tested = {k: v for k, v in base.items() if k != "random"}
    z = NormalDist().inv_cdf(1 - 0.025 / len(tested))
    off = []
    for name, r in tested.items():
        lo, hi = wilson(round(r["accuracy"] * r["n"]), r["n"], z)
        if not lo <= 0.25 <= hi:
            off.append(name)
    return {"items": len(items), "positions": positions, "problems": problems, "baselines": base,
            "baselines_off_chance": off, "ok": not problems and not off}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval.spectrogram_baselines DIR/items.jsonl``: print :func:`validity` as JSON; exit 1 if not ok."""
    import argparse

    from data_builders.spectrogram_mcq import read_items

    parser = argparse.ArgumentParser(prog="python -m eval.spectrogram_baselines", description=main.__doc__)
    parser.add_argument("items", help="items.jsonl of a spectrogram-mcq build")
    args = parser.parse_args(argv)
    report = validity(read_items(args.items, None))
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())
