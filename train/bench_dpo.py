"""Benchmark: a DPO step against an SFT step on the same pairs, unshared, shared-prefix and with a precomputed
reference.

``python -m train.bench_dpo [--runs 5] [--family qwen2.5 --family qwen3]`` builds a medium-size thinker of each
family offline (random weights, about 28M parameters for Qwen2.5-Omni and 30M for Qwen3-Omni), writes two synthetic clips as a recipe's built SFT and DPO datasets, builds the stages' real trainers
(:func:`train.sft.build_trainer`, :func:`train.dpo.build_trainer`: LoRA on the language model, the Omni collators)
and times one training step (forward and backward, no optimizer update) on the same two pairs, after one warm-up:

- SFT: the two chosen answers (two sequences);
- DPO unshared: TRL's layout, four full sequences for the policy and four for the reference;
- DPO shared: two packed sequences (:mod:`train.shared_prefix`) for the policy and two for the reference, the frozen
  encoders once;
- DPO precomputed: shared, with the reference's log-probs read from the dataset.

Prints min and median CPU seconds (``time.process_time``: all threads of the process; OpenMP threads are told to
sleep rather than spin when idle, see :func:`main`) and wall seconds per step, the CPU seconds of collating the batch,
and ratios of CPU times (of the medians, and of the mins): DPO/SFT (target <= 1.5x, goal 1.35x) and the reference's
cost (live minus precomputed step) per policy step (target <= 0.35x). With LoRA the policy's backward computes no
weight gradients for the frozen weights, so a policy step is about two forwards and a live reference (one forward)
about 0.4 of it: the floor with a live reference is then about 1.45x, and the targets are met by the precomputed
reference. Figures, not a test; :func:`bench` returns the rows for an aggregating script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

# Tens of millions of parameters: big enough that the model, not Python, dominates a step on a CPU.
FAMILIES = {"qwen2.5": "tiny-qwen2.5-omni", "qwen3": "tiny-qwen3-omni"}
MEDIA = "media: {fps: 2, max_frames: 8, max_pixels: 12544, max_clip_seconds: 4}"
PROMPT = "Watch this video and listen to its audio carefully. Are the audio and video synchronised?"
LABELS = {"sft": "SFT step", "unshared": "DPO step, unshared", "shared": "DPO step, shared prefix",
          "precomputed": "DPO step, shared prefix, precomputed reference"}
ANSWERS = ("The audio is delayed by about 1.5 seconds.", "The audio and video are in sync.")


def _medium_size():
    from train.backbones import TinySize

    return TinySize(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, mrope_section=(8, 12, 12),
                    audio_layers=2, audio_width=128, vision_depth=2, vision_width=128, audio_chunk_s=10)


def _datasets(root: Path) -> Path:
    """data/<recipe>/{sft,dpo}: two clips, a pair per clip (both sides hearing the shifted track) and its chosen
    answer as the SFT sample."""
    from datasets import Dataset

    from data_builders.annotations import read_annotations
    from data_builders.interventions import Intervention
    from data_builders.records import PreferencePair, SFTSample
    from data_builders.synth import synthesize

    synthesize(root / "clips", clips=2, seed=3, progress=False)
    shift = Intervention(kind="shift", offset=1.5)
    pairs, samples = [], []
    for a in read_annotations(root / "clips" / "annotations.jsonl"):
        common = dict(id=a.record.id, source="ctp", source_id=a.record.id, video=str(a.path.resolve()),
                      prompt=PROMPT)
        pairs.append(PreferencePair(**common, chosen=ANSWERS[0], rejected=ANSWERS[1], chosen_intervention=shift,
                                    rejected_intervention=shift))
        samples.append(SFTSample(**common, answer=ANSWERS[0], intervention=shift))
    data = root / "data"
    for name, records in (("sft", samples), ("dpo", pairs)):
        Dataset.from_list([r.model_dump(mode="json") for r in records]).save_to_disk(str(data / name))
    return data


def _contexts(root: Path, backbone: Path, data: Path):
    from recipes.schema import load_recipe
    from train.runtime import StageContext

    path = root / "bench.yaml"
    path.write_text(f"""# Run: python -m train.bench_dpo
backbone: {backbone}
{MEDIA}
lora: {{dropout: 0}}
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 1, learning_rate: 1.0e-4, batch_size: 2}}
  unshared: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 1, learning_rate: 1.0e-4, batch_size: 2,
              shared_prefix: false}}
  shared: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 1, learning_rate: 1.0e-4, batch_size: 2}}
  precomputed: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 1, learning_rate: 1.0e-4, batch_size: 2,
                 precompute_ref_log_probs: true}}
""", encoding="utf-8")
    recipe = load_recipe(path)
    return {name: StageContext(recipe=recipe, name=name, stage=stage, out_dir=root / "runs" / name,
                               base=str(backbone), base_ref=str(backbone), data_root=data, is_last=True)
            for name, stage in recipe.stages.items()}


def _time_step(trainer, runs: int) -> dict[str, list[float]]:
    """CPU and wall seconds of ``runs`` training steps on the trainer's first batch, after one warm-up, and CPU
    seconds of collating that batch (decoding, processor), ``runs`` times."""
    rows = [trainer.train_dataset[i] for i in range(trainer.args.per_device_train_batch_size)]
    collate = []
    for _ in range(runs):
        c = time.process_time()
        batch = trainer.data_collator(rows)
        collate.append(time.process_time() - c)
    inputs = trainer._prepare_inputs(batch)
    model = trainer.model
    trainer.current_gradient_accumulation_steps = 1  # set by train() for each step; one step here
    cpu, wall = [], []
    for i in range(runs + 1):
        model.zero_grad(set_to_none=True)
        c, w = time.process_time(), time.perf_counter()
        trainer.training_step(model, inputs)
        if i:  # the first step warms allocator and kernels up
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
    return {"s cpu": cpu, "s wall": wall, "s cpu, collate": collate}


def _family(family: str, runs: int) -> list[dict]:
    from train import dpo, sft
    from train.backbones import build_tiny_backbone

    with tempfile.TemporaryDirectory(prefix="bench_dpo-") as tmp:
        root = Path(tmp)
        backbone = build_tiny_backbone(FAMILIES[family], root / "backbone", size=_medium_size())
        contexts = _contexts(root, backbone, _datasets(root))
        times, rows = {}, []
        for name, ctx in contexts.items():
            trainer = (sft if name == "sft" else dpo).build_trainer(ctx)
            if name == "sft":
                params = sum(p.numel() for p in trainer.model.parameters())
            measured = _time_step(trainer, runs)
            times[name] = measured["s cpu"]
            rows += [_row(f"{family} ({params / 1e6:.0f}M) {LABELS[name]}", unit, values)
                     for unit, values in measured.items() if unit != "s cpu, collate" or name != "precomputed"]
            del trainer
    for name, target in (("unshared", None), ("shared", "<= 1.5 (goal 1.35)"), ("precomputed", None)):
        rows.append(_ratio(f"{family} DPO/SFT, {name}",
                           lambda f: f(times[name]) / f(times["sft"]), target))
    rows.append(_ratio(f"{family} reference pass / policy step (shared)",
                       lambda f: (f(times["shared"]) - f(times["precomputed"])) / f(times["precomputed"]), "<= 0.35"))
    return rows


def _row(name: str, unit: str, values: list[float]) -> dict:
    return {"name": name, "unit": unit, "min": min(values), "median": statistics.median(values)}


def _ratio(name: str, of, target: str | None) -> dict:
    """A ratio row: ``of(statistic)`` with the min and with the median of each side's CPU times."""
    row = {"name": name, "unit": "x", "min": of(min), "median": of(statistics.median)}
    if target:
        row["target"] = target
    return row


def bench(runs: int = 5, families: tuple[str, ...] = tuple(FAMILIES)) -> list[dict]:
    """Time SFT and DPO steps of medium thinkers of ``families`` (``runs`` steps each after a warm-up).

    Returns rows ``{"name", "unit", "min", "median"}``: seconds (unit "s cpu" / "s wall") per step, and ratios of
    the median CPU times (unit "x", min = median = the ratio, with a ``target`` where the project sets one).
    """
    import sys

    from recipes.quiet import quiet_startup

    if "torch" in sys.modules and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        warnings.warn("OMP_WAIT_POLICY is not PASSIVE: with several threads on a busy machine, CPU times include "
                      "OpenMP threads spinning at barriers (set it before torch is imported)", stacklevel=2)
    quiet_startup()
    return [row for family in families for row in _family(family, runs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.bench_dpo", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), help="default: both")
    args = parser.parse_args(argv)
    # Before torch loads OpenMP: idle worker threads then sleep instead of spinning, which would otherwise count as
    # CPU time (4-10x the work itself when the cores are shared with other processes).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for row in bench(args.runs, tuple(args.family or FAMILIES)):
        target = f"  (target {row['target']})" if "target" in row else ""
        if row["unit"] == "x":
            print(f"{row['name']:62s} median {row['median']:5.2f}x [min {row['min']:5.2f}x]{target}")
        else:
            print(f"{row['name']:62s} median {row['median']:7.3f} [min {row['min']:7.3f}] {row['unit']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
