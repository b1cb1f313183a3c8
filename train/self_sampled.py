"""Self-sampled preference pairs (the data source ``self_sampled``): built at the start of a DPO stage.

The current policy answers each SFT prompt greedily (its clip, its audio condition); an answer judged wrong against
the reference answer becomes the rejected side of a pair whose chosen side is the reference. Answers judged right
give no pair (there is nothing to prefer). Pairs are saved under ``<stage>/self_sampled/`` and reused on resume;
every judgement is in ``<stage>/self_sampled.jsonl``.

The judge, :func:`answers_agree`, is deterministic and deliberately simple:

1. Both texts are lower-cased; each is mapped to the set of *labels* it states, from the answer vocabulary of the
   Thud dimensions (synced, delayed, early, silent, mismatched), by keyword.
2. If the reference states labels, the answer agrees iff it states exactly the same labels and, when the reference
   gives an offset ("by about 2.1 seconds", "2.1 s late"; event times like "at 4.6 s" are not offsets), the answer
   gives one within ``offset_tolerance`` of it.
3. Otherwise (general questions), the answer agrees iff its normalised text (lower case, alphanumerics and single
   spaces) equals the reference's, or, for a multiple-choice reference that names an option letter "(B)" / "B.",
   the answer names the same letter first.
"""

from __future__ import annotations

import re
from pathlib import Path

from data_builders.records import PreferencePair, SFTSample

# Keyword -> label. Order matters only for readability; every matching label is collected.
# The phrasings follow the answer templates of data_builders/answers.py and common free-form variants.
_LABEL_PATTERNS: dict[str, tuple[str, ...]] = {
    "synced": (r"\bin sync\b", r"\bsynchroni[sz]ed\b", r"\bsynced\b", r"\baligned\b", r"\bin time\b",
               r"\blines? up\b", r"\bat the same (moment|time)\b", r"\bfits the picture\b"),
    "delayed": (r"\bdelayed\b", r"\blate\b", r"\blags?\b", r"\bbehind\b"),
    "early": (r"\bearly\b", r"\bahead\b", r"\bbefore the visible\b", r"\bprecedes?\b"),
    "silent": (r"\bsilent\b", r"\bsilence\b", r"\bno sound\b", r"\bno audio\b", r"\bno audible\b",
               r"\bhear nothing\b", r"\bmuted?\b"),
    "mismatched": (r"\bdoes not match\b", r"\bdoesn't match\b", r"\bmismatch", r"\bnot match", r"\bunrelated\b"),
}
_NEGATED_SYNC = re.compile(r"\b(not|out of) (in )?sync", re.I)
# An offset is a number of seconds tied to the lateness/earliness ("by about 2.1 seconds", "2.1 s late"), not an
# event time ("heard at 4.6 s"): reference answers state both.
_NUM = r"(\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?)\b"
_OFFSET = (re.compile(r"\bby (?:about |roughly |around |approximately |some )?" + _NUM),
           re.compile(_NUM + r",?\s*(?:too )?(?:late|early|before|after|behind|ahead)\b"))
_OPTION = re.compile(r"(?:^|\()\s*([A-H])\s*[).:]")


def stated_labels(text: str) -> frozenset[str]:
    """The Thud answer labels a text states (see module docstring)."""
    t = text.lower()
    found = {label for label, pats in _LABEL_PATTERNS.items() if any(re.search(p, t) for p in pats)}
    if _NEGATED_SYNC.search(t):
        found.discard("synced")
    return frozenset(found)


def stated_offset(text: str) -> float | None:
    """The first offset a text states ("delayed by about 2.1 seconds", "4.6 s, 2.1 s late" -> 2.1), or None.
    Event times ("heard at 4.6 s") are not offsets."""
    t = text.lower()
    hits = [m for pattern in _OFFSET if (m := pattern.search(t))]
    return float(min(hits, key=lambda m: m.start()).group(1)) if hits else None


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def answers_agree(reference: str, answer: str, offset_tolerance: float = 0.5) -> bool:
    """Deterministic check that ``answer`` says what ``reference`` says (module docstring for the rules)."""
    ref_labels = stated_labels(reference)
    if ref_labels:
        if stated_labels(answer) != ref_labels:
            return False
        ref_off = stated_offset(reference)
        if ref_off is None:
            return True
        got = stated_offset(answer)
        return got is not None and abs(got - ref_off) <= offset_tolerance
    ref_opt = _OPTION.search(reference.strip())
    if ref_opt:
        got = _OPTION.search(answer.strip())
        return got is not None and got.group(1) == ref_opt.group(1)
    return _normal(reference) == _normal(answer)


def generate_answers(model, processor, media, samples: list[SFTSample], base_dir: Path | None, batch_size: int,
                     max_new_tokens: int) -> list[str]:
    """Greedy answers of ``model`` to each sample's prompt, with its clip and audio condition."""
    from train.collators import ClipCache
    from train.inputs import generate_texts

    was_training = model.training
    model.eval()
    answers: list[str] = []
    try:
        for i in range(0, len(samples), batch_size):
            chunk = samples[i: i + batch_size]
            cache = ClipCache(media, base_dir)
            answers += generate_texts(model, processor, media, [s.prompt for s in chunk],
                                      videos=[cache.frames(s.video, s.start, s.end) for s in chunk],
                                      audios=[cache.audio(s.video, s.intervention, s.start, s.end) for s in chunk],
                                      max_new_tokens=max_new_tokens)
    finally:
        model.train(was_training)
    return answers


def self_sampled_pairs(ctx, model, processor):
    """Build (or reload) the stage's self-sampled pairs as an HF dataset of ``PreferencePair`` rows.

    Call it once the stage's ``DPOConfig`` exists (it sets up the distributed state). Every rank answers its share
    of the prompts (rank r takes rows r, r + world, ...), so no rank waits at a barrier for the whole set; the main
    process then writes the pairs in dataset order.
    Raises:
        TrainingSetupError: when every answer was right (no pair to train on).
    """
    import json

    from accelerate import PartialState
    from datasets import Dataset, load_from_disk

    from train.runtime import TrainingSetupError, dataset_dir, load_rows, local_device

    folder = ctx.out_dir / "self_sampled"
    state = PartialState()
    if not (folder / "state.json").is_file():
        opts = ctx.stage.self_sampled
        base_dir = dataset_dir(ctx)
        rows = load_rows(ctx)
        mine = list(range(state.process_index, len(rows), state.num_processes))
        samples = [SFTSample.model_validate(rows[i]) for i in mine]
        if not getattr(model, "is_loaded_in_4bit", False):  # 4-bit weights were placed on this rank's GPU at load
            model.to(local_device())
        answers = generate_answers(model, processor, ctx.recipe.media, samples, base_dir, opts.batch_size,
                                   opts.max_new_tokens)
        part = ctx.out_dir / f"self_sampled.part{state.process_index}.jsonl"
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        with part.open("w", encoding="utf-8") as fh:
            for i, s, a in zip(mine, samples, answers):
                fh.write(json.dumps({"row": i, "id": s.id, "reference": s.answer, "answer": a,
                                     "agrees": answers_agree(s.answer, a, opts.offset_tolerance)}) + "\n")
        state.wait_for_everyone()
        if state.is_main_process:
            parts = sorted(ctx.out_dir.glob("self_sampled.part*.jsonl"))
            judged = sorted((json.loads(line) for p in parts for line in p.read_text(encoding="utf-8").splitlines()),
                            key=lambda r: r["row"])
            (ctx.out_dir / "self_sampled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judged),
                                                            encoding="utf-8")
            for p in parts:
                p.unlink()
            pairs = []
            for r in judged:
                if r["agrees"]:
                    continue
                s = SFTSample.model_validate(rows[r["row"]])
                video = Path(s.video)
                video = video if video.is_absolute() else (base_dir / video).resolve()
                pairs.append(PreferencePair(
                    id=f"{s.id}-self", source="self_sampled", source_id=s.source_id, video=str(video),
                    start=s.start, end=s.end, prompt=s.prompt, meta={**s.meta, "from": s.source}, chosen=s.answer,
                    rejected=r["answer"], chosen_intervention=s.intervention, rejected_intervention=s.intervention))
            if pairs:
                from recipes.io import staged_folder

                with staged_folder(folder) as tmp:
                    Dataset.from_list([p.model_dump(mode="json") for p in pairs]).save_to_disk(str(tmp))
        state.wait_for_everyone()
    if not (folder / "state.json").is_file():
        raise TrainingSetupError(f"stages.{ctx.name}.self_sampled: the policy answered every prompt right (see "
                                 f"{ctx.out_dir / 'self_sampled.jsonl'}); there is no wrong answer to prefer against")
    return load_from_disk(str(folder))
