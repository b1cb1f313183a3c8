"""Benchmark closed-set scoring: 5-option scoring with a shared prefix and with every option a full sequence,
against one forward of the prompt, on medium-size thinkers of both Omni families built offline; and Thud's
closed-set items per second on a small synthetic set, both ways.

``python -m eval.bench_scoring [--runs 5]`` prints min and median CPU seconds of ``runs`` repeats and the ratios
(target: 5-option scoring <= 1.5x one prompt forward). "One prompt forward" is what any answer costs at least:
the processor on the clip and the prompt, then one forward pass of the thinker over it. The question is Thud's
(its five options listed in the prompt, then each scored). CPU time of this process, not wall time: on a shared
machine wall time mostly measures the neighbours. Figures, not a test: they depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from eval.thud.prompts import closed_set_question
from train.bench import timed

# Tens of millions of parameters (about 30M for each family; Qwen3-Omni's 4 experts are a quarter as wide each):
# big enough that the thinker's arithmetic, not Python, dominates. head_dim 64, so the rotary sections sum to 32.
SIZE = dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, mrope_section=(8, 12, 12),
            audio_layers=4, audio_width=256, vision_depth=4, vision_width=256, audio_chunk_s=30)
# 4 s of a synthetic clip (168x140) at 4 fps: a prompt of about 450 tokens, most of them video and audio (real
# checkpoints see thousands: there the options' share, and so the ratio, is smaller still).
MEDIA = dict(fps=4.0, max_frames=16, max_clip_seconds=4.0)
# Thud's closed-set question about temporal sync: the question, its five options listed, then each option scored.
QUESTION = closed_set_question("bench", "temporal_sync", 0)
PROMPT, OPTIONS = QUESTION.prompt, QUESTION.options
TARGET = "<= 1.5"
THUD_CLIPS = 2


def _row(name: str, unit: str, values: list[float], target: str | None = None) -> dict:
    out = {"name": name, "unit": unit, "min": min(values), "median": statistics.median(values), "runs": len(values)}
    return out | ({"target": target} if target else {})


def _ratio(name: str, num: dict, den: dict, target: str | None = None) -> dict:
    out = {"name": name, "unit": "x", "min": num["min"] / den["min"], "median": num["median"] / den["median"],
           "runs": num["runs"]}
    return out | ({"target": target} if target else {})


def _timed(fn: Callable[[], object], runs: int, warm: bool = True) -> list[float]:
    return timed(fn, runs, clock=time.process_time, warm=warm)  # CPU time: wall time measures the neighbours


def _clips(root: Path) -> Path:
    """``THUD_CLIPS`` synthetic clips, all held out; returns their annotation JSONL."""
    import json

    from data_builders.synth import synthesize

    synthesize(root, clips=THUD_CLIPS, seed=0, progress=False)
    rows = [json.loads(x) for x in (root / "annotations.jsonl").read_text().splitlines()]
    out = root / "test_clips.jsonl"
    out.write_text("".join(json.dumps(r | {"split": "test", "video": str((root / r["video"]).resolve())}) + "\n"
                           for r in rows))
    return out


@contextmanager
def _unshared():
    """The Thud suite with every option scored as a full sequence (the path before the shared prefix)."""
    import eval.thud.suite as suite
    from eval.scoring import score_unshared

    def full(*args, shared=None, **kwargs):
        return score_unshared(*args, **kwargs)

    real, suite.score_options = suite.score_options, full
    try:
        yield
    finally:
        suite.score_options = real


def _family_rows(name: str, root: Path, media, frames, audio, runs: int) -> tuple[list[dict], object, object]:
    import torch

    from eval.scoring import score_options, score_unshared
    from train.backbones import TinySize, build_tiny_backbone, load_backbone
    from train.inputs import chat_messages, encode, forward_kwargs

    label = name.removeprefix("tiny-")
    model, processor = load_backbone(str(build_tiny_backbone(name, root / name, size=TinySize(**SIZE))))
    model.eval()
    head = processor.apply_chat_template(chat_messages(PROMPT, video=True, audio=not media.audio_in_video),
                                         tokenize=False, add_generation_prompt=True)
    n_tokens = encode(processor, media, [head], [frames], [audio])["input_ids"].shape[1]
    params = sum(p.numel() for p in model.parameters()) / 1e6

    def forward():
        with torch.no_grad():
            model(**encode(processor, media, [head], [frames], [audio]), **forward_kwargs(media, True))

    one = _row(f"{label}: one prompt forward ({params:.0f}M params, {n_tokens} tokens)", "cpu s", _timed(forward, runs))
    shared = _row(f"{label}: 5-option scoring, shared prefix", "cpu s", _timed(
        lambda: score_options(model, processor, media, PROMPT, OPTIONS, frames=frames, audio=audio), runs))
    full = _row(f"{label}: 5-option scoring, full sequences", "cpu s", _timed(
        lambda: score_unshared(model, processor, media, PROMPT, OPTIONS, frames=frames, audio=audio), runs))
    return [one, shared, full, _ratio(f"{label}: 5-option scoring (shared) / one prompt forward", shared, one, TARGET),
            _ratio(f"{label}: 5-option scoring (full sequences) / one prompt forward", full, one),
            _ratio(f"{label}: full sequences / shared prefix", full, shared)], model, processor


def _thud_rows(model, processor, media, annotations: Path, root: Path, runs: int) -> list[dict]:
    """Thud closed-set items per second (every condition of every clip, a fresh cache each run), both ways."""
    from eval.context import EvalContext, PredictionCache
    from eval.thud.items import held_out_clips, plan_items
    from eval.thud.suite import ThudOptions, evaluate_items

    opts = ThudOptions(annotations=str(annotations), modes=["closed_set"])
    items = plan_items(held_out_clips(annotations), opts.offsets, 1, 0, opts.conditions, opts.margin).items
    n = [0]

    def once():
        n[0] += 1
        ctx = EvalContext(checkpoint=root, fingerprint=f"bench{n[0]}", model=model, processor=processor, media=media,
                          out_dir=root, cache=PredictionCache(root / f"cache{n[0]}.jsonl"))
        return len(evaluate_items(ctx, items, opts)["closed_set"])

    questions = once()  # also the warm-up
    rows = []
    for how, ctx_manager in (("shared prefix", None), ("full sequences", _unshared)):
        if ctx_manager is None:
            times = _timed(once, runs, warm=False)
        else:  # the slow path, for comparison: one pass (tens of seconds) is enough to see it
            with ctx_manager():
                times = _timed(once, 1, warm=False)
        # items/s: the best run is the shortest time, so min and median swap places.
        rates = [questions / t for t in times]
        rows.append({"name": f"Thud closed-set items/s, {how} ({questions} questions, {THUD_CLIPS} clips)",
                     "unit": "items/cpu s", "min": min(rates), "median": statistics.median(rates),
                     "runs": len(rates)})
    return rows


def bench(runs: int = 5) -> list[dict]:
    """Rows ``{"name", "unit", "min", "median", "runs"[, "target"]}``: per family one prompt forward, 5-option
    scoring shared and unshared, their ratios; then Thud closed-set items per CPU second on the Qwen2.5-Omni
    thinker (at most 2 timed passes, 1 with full sequences)."""
    import torch

    from data_builders.media import load_clip
    from recipes.media import MediaSettings

    torch.manual_seed(0)
    media = MediaSettings(**MEDIA)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        annotations = _clips(root / "clips")
        clip = load_clip(next(iter((root / "clips").rglob("*.mp4"))), media)
        kept = None
        for name in ("tiny-qwen3-omni", "tiny-qwen2.5-omni"):
            fam_rows, model, processor = _family_rows(name, root, media, clip.frames, clip.audio, runs)
            rows += fam_rows
            kept = (model, processor)
        # A Thud pass takes seconds (tens with full sequences): at most two timed passes keep this short.
        rows += _thud_rows(*kept, media, annotations, root, max(1, min(runs, 2)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_scoring", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed repeats of each figure (after one warm-up)")
    args = parser.parse_args(argv)
    # Before torch loads OpenMP: idle worker threads then sleep instead of spinning, which would count as CPU time.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from recipes.quiet import quiet_startup

    quiet_startup()
    for r in bench(args.runs):
        target = f"  (target {r['target']})" if "target" in r else ""
        print(f"{r['name']:78s} min {r['min']:8.3f}  median {r['median']:8.3f} {r['unit']}{target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
