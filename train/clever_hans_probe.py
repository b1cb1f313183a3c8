"""``python -m train.clever_hans_probe CHECKPOINT --data data/clever_hans_seed0 [--clips 24]``: what a checkpoint of
the "Clever Hans" recipe perceives, on *training* clips only.

Asks the perception stage's own questions (one modality at a time) and scores closed choices by option
log-likelihood, as the closed-set eval does: the object among the four classes (video), the sound among the four
impact sounds and silence (original, swapped and muted audio), and the landing time seen and the sound onset heard
on a 0.5 s grid (right when the chosen grid point is the one nearest the truth). Prints accuracy per aspect next to
chance, so the perception stages can be tuned without ever looking at held-out clips: they are never read.

``--layers`` reads the hidden states instead: at the end of Thud's sound-consistency question, per layer, how
well a linear read-out tells the seen object, the heard object and whether they match (what Swap needs).

``--sync`` asks instead Thud's sync question about shifted training clips, with the gap the shift leaves as digital
silence (as the intervention makes it) and filled with the clip's own quiet: whether a model that answers Shift
compares times, or detects the silence.

The perception stages alone: ``python -m train recipes/clever_hans.yaml --runs R --data D --set seed=N``
with ``--set stages.{natural_sft,dpo,control}.enabled=false``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# The grid the times are chosen on (seconds): every landing and onset of the listen world falls inside it.
TIME_GRID = tuple(np.round(np.arange(0.5, 5.0, 0.5), 1))


def _nearest(t: float) -> int:
    return int(np.argmin([abs(g - t) for g in TIME_GRID]))


def _train_clips(data: str | Path) -> list:
    """The training clips of the built folder ``data`` (held-out clips are never read). Raises ValueError: none."""
    from data_builders.annotations import read_annotations

    train = [a for a in read_annotations(Path(data) / "synth" / "annotations.jsonl") if a.record.split == "train"]
    if not train:
        raise ValueError(f"{data}: no training clip in synth/annotations.jsonl")
    return train


def _swapped(train: list, k: int, audio: np.ndarray, media):
    """The swap the probes ask about for training clip ``k``: the next clip (wrapping round) that may donate its
    track, and ``audio`` replaced by that track. Returns (donor clip, swapped waveform)."""
    from data_builders.annotations import is_swap_donor
    from data_builders.interventions import Intervention, apply_intervention
    from data_builders.media import load_clip

    clip = train[k]
    donor = next(d for d in train[k + 1:] + train[:k] if is_swap_donor(d.record, clip.record))
    spec = Intervention(kind="swap", donor=donor.record.id, donor_video=str(donor.path))
    return donor, apply_intervention(audio, spec, media.sample_rate, load_clip(donor.path, media).audio)


def probe(checkpoint: str | Path, data: str | Path, clips: int = 24) -> dict[str, dict]:
    """{aspect: {"correct", "n", "chance"}} of ``checkpoint`` on the first ``clips`` training clips of ``data``.

    Raises:
        ValueError: ``data`` holds no training clip.
    """
    from data_builders.media import load_clip
    from data_builders.pairs import PERCEPTION_QUESTIONS, _SILENT, _at, _cap_first, _sentence
    from data_builders.synth import OBJECT_CLASSES
    from eval.checkpoint import load_checkpoint
    from eval.scoring import score_options

    train = _train_clips(data)
    loaded = load_checkpoint(checkpoint)
    model, processor, media = loaded.model, loaded.processor, loaded.media
    objects = [_sentence(_cap_first(c.visual_event)) for c in OBJECT_CLASSES]
    sounds = [_sentence(_cap_first(c.audio_event)) for c in OBJECT_CLASSES] + [_SILENT]
    sources = objects + [_SILENT]
    times = [_at(t) for t in TIME_GRID]
    tally: dict[str, list[int]] = {}

    def ask(aspect: str, options: list[str], truth: int, frames, audio) -> None:
        s = score_options(model, processor, media, PERCEPTION_QUESTIONS[aspect.split(" ")[0]], options,
                          frames=frames, audio=audio)
        tally.setdefault(aspect, []).append(int(s.best() == truth))

    for k, clip in enumerate(train[:clips]):
        rec = clip.record
        decoded = load_clip(clip.path, media)
        frames, audio = decoded.frames, decoded.audio
        donor, swapped = _swapped(train, k, audio, media)
        cls = [c.name for c in OBJECT_CLASSES].index(rec.object_class)
        donor_cls = [c.name for c in OBJECT_CLASSES].index(donor.record.object_class)
        silent = np.zeros_like(audio)
        ask("object", objects, cls, frames, audio)
        ask("object (muted)", objects, cls, frames, silent)
        ask("impact_time", times, _nearest(rec.t_visual), frames, audio)
        # Muted: in an original clip the onset heard is the landing, so only the muted question tests the eyes.
        ask("impact_time (muted)", times, _nearest(rec.t_visual), frames, silent)
        ask("sound (original)", sounds, cls, frames, audio)
        ask("sound (swapped)", sounds, donor_cls, frames, swapped)
        ask("sound (muted)", sounds, len(sounds) - 1, frames, silent)
        ask("sound_source (original)", sources, cls, frames, audio)
        ask("sound_source (swapped)", sources, donor_cls, frames, swapped)
        ask("sound_time (original)", times, _nearest(rec.t_audio), frames, audio)
    span = [g for g in TIME_GRID if 1.0 <= g <= 3.5]  # the grid points a landing can be nearest to
    chance = {"object": 1 / len(objects), "sound": 1 / len(sounds), "sound_source": 1 / len(sources),
              "impact_time": 1 / len(span),
              "sound_time": 1 / len(span)}
    return {a: {"correct": sum(v), "n": len(v), "chance": chance[a.split(" ")[0]]} for a, v in tally.items()}


def sync_probe(checkpoint: str | Path, data: str | Path, clips: int = 24,
               offsets: tuple[float, ...] = (0.8, -0.8, 1.5, -1.5)) -> dict[str, dict]:
    """Thud's temporal-sync question on shifted *training* clips, two ways: the gap a shift leaves as the
    intervention makes it (digital silence) and filled with the clip's own quiet
    (an Intervention's ``gap: room_tone``).
    A model that compares the sound's time with the landing answers both alike; one that detects the silence
    answers only the first. {"shift, silent gap" | "shift, quiet gap" | "original": {"correct", "n", "chance"}}."""
    from data_builders.interventions import apply_intervention, shift_intervention
    from data_builders.media import load_clip
    from eval.checkpoint import load_checkpoint
    from eval.scoring import score_options
    from eval.thud.prompts import closed_set_question

    train = _train_clips(data)
    loaded = load_checkpoint(checkpoint)
    tally: dict[str, list[int]] = {}

    def ask(aspect: str, clip, frames, audio, truth: str) -> None:
        q = closed_set_question(clip.record.id, "temporal_sync", 0)
        s = score_options(loaded.model, loaded.processor, loaded.media, q.prompt, q.options, frames=frames,
                          audio=audio)
        per_token = np.array(s.logprob) / np.array(s.n_tokens)  # as the closed-set eval compares them
        tally.setdefault(aspect, []).append(int(q.order[int(np.argmax(per_token))] == truth))

    sr = loaded.media.sample_rate
    for clip in train[:clips]:
        decoded = load_clip(clip.path, loaded.media)
        ask("original", clip, decoded.frames, decoded.audio, "synced")
        for off in offsets:
            silent_gap = apply_intervention(decoded.audio, shift_intervention(off), sr)
            truth = "delayed" if off > 0 else "early"
            ask("shift, silent gap", clip, decoded.frames, silent_gap, truth)
            quiet_gap = apply_intervention(decoded.audio, shift_intervention(off, "room_tone"), sr)
            ask("shift, quiet gap", clip, decoded.frames, quiet_gap, truth)
    return {a: {"correct": sum(v), "n": len(v), "chance": 0.2} for a, v in tally.items()}


def readout_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 4,
                     ridge: float = 1.0) -> float:
    """Cross-validated accuracy of a linear read-out of the labels ``y`` from the features ``x`` (rows): one-vs-rest
    ridge regression on standardised features, ``folds`` folds by ``groups`` (rows of one clip stay in one fold, so
    a clip's own frames cannot carry its label from the training folds to the test fold)."""
    classes = np.unique(y)
    right = 0
    for f in range(folds):
        test = groups % folds == f
        mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-6
        a, b = (x[~test] - mu) / sd, (x[test] - mu) / sd
        target = np.where(y[~test, None] == classes[None, :], 1.0, -1.0)
        w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ target)
        right += int((classes[np.argmax(b @ w, axis=1)] == y[test]).sum())
    return right / len(y)


def layer_probe(checkpoint: str | Path, data: str | Path, clips: int = 128,
                dimension: str = "sound_consistency") -> dict[str, dict]:
    """Where the model holds what Swap needs: the hidden state of each layer at the last prompt token of Thud's
    ``dimension`` question, for training clips with their own track and with another class's track, read out
    linearly (:func:`readout_accuracy`) for the seen object, the heard object and whether the two match.
    {"layer i": {"seen", "heard", "match", "n"}}; chance is 1/4, 1/4 and 1/2."""
    import torch

    from data_builders.media import load_clip
    from eval.checkpoint import load_checkpoint
    from eval.thud.prompts import closed_set_question
    from train.inputs import chat_messages, encode, forget_rope_offsets, forward_kwargs, on_model_device

    train = _train_clips(data)
    loaded = load_checkpoint(checkpoint)
    model, processor, media = loaded.model, loaded.processor, loaded.media
    names = sorted({a.record.object_class for a in train})
    states, seen, heard, groups = [], [], [], []
    for k, clip in enumerate(train[:clips]):
        decoded = load_clip(clip.path, media)
        donor, swapped = _swapped(train, k, decoded.audio, media)
        head = processor.apply_chat_template(chat_messages(closed_set_question(clip.record.id, dimension, 0).prompt),
                                             tokenize=False, add_generation_prompt=True)
        for audio, cls in ((decoded.audio, clip.record.object_class), (swapped, donor.record.object_class)):
            batch = on_model_device(model, encode(processor, media, [head], videos=[decoded.frames], audios=[audio]))
            forget_rope_offsets(model)  # the rotary offset of the previous clip must not be reused
            with torch.no_grad():
                out = model(**batch, **forward_kwargs(media, True), output_hidden_states=True)
            states.append(torch.stack([h[0, -1] for h in out.hidden_states]).float().cpu().numpy())
            seen.append(names.index(clip.record.object_class))
            heard.append(names.index(cls))
            groups.append(k)
    x, seen_y, heard_y, g = np.array(states), np.array(seen), np.array(heard), np.array(groups)
    return {f"layer {i}": {"seen": readout_accuracy(x[:, i], seen_y, g),
                           "heard": readout_accuracy(x[:, i], heard_y, g),
                           "match": readout_accuracy(x[:, i], (seen_y == heard_y).astype(int), g), "n": len(g)}
            for i in range(x.shape[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.clever_hans_probe", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a stage folder's checkpoint (or its final weights folder)")
    parser.add_argument("--data", required=True, help="the built data folder of the same seed (holds synth/)")
    parser.add_argument("--clips", type=int, default=None,
                        help="training clips to ask about (default 24; with --layers 128, enough rows for its folds)")
    parser.add_argument("--sync", action="store_true",
                        help="instead: Thud's sync question on shifted training clips, the gap a shift leaves "
                             "silent and filled with the clip's own quiet")
    parser.add_argument("--layers", action="store_true",
                        help="instead: per layer, how well a linear read-out at the end of Thud's sound-consistency "
                             "question tells the seen object, the heard one and whether they match (own and "
                             "swapped tracks of up to --clips training clips)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    from recipes.quiet import quiet_startup

    quiet_startup()
    clips = {} if args.clips is None else {"clips": args.clips}  # each probe's own default otherwise
    if args.layers:
        res = layer_probe(args.checkpoint, args.data, **clips)
        lines = [f"{'hidden state':<14}{'seen %':>8}{'heard %':>9}{'match %':>9}{'n':>5}   (chance 25 / 25 / 50)"]
        lines += [f"{layer:<14}{100 * r['seen']:>8.1f}{100 * r['heard']:>9.1f}{100 * r['match']:>9.1f}{r['n']:>5}"
                  for layer, r in res.items()]
    else:
        res = (sync_probe if args.sync else probe)(args.checkpoint, args.data, **clips)
        lines = [f"{'aspect':<24}{'accuracy %':>12}{'chance %':>10}{'n':>5}"]
        lines += [f"{aspect:<24}{100 * r['correct'] / r['n']:>12.1f}{100 * r['chance']:>10.1f}{r['n']:>5}"
                  for aspect, r in res.items()]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
