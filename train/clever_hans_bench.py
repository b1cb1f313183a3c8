"""``python -m train.clever_hans_bench [--seeds 0 1 2]``: the "Clever Hans" recipe end to end for several seeds, then
mean ± sd of every target figure, next to its target.

Each seed goes through the production commands only (``data_builders build``, ``train``, ``eval watch``) with
``--set seed=N``: its own synthetic world (held-out clips included), its own data folder
(``data/<recipe>_seed<N>``) and run folder (``<out>/seed<N>/<recipe>``), whose ``summary.json`` the figures come
from (:func:`eval.summary.target_figures`). Wall-clock and CPU time (of the child processes) are printed per seed.
``<out>/bench.json`` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# (branch, figure, comparison, target): the bar a run must clear.
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("natural_sft", "min_original", ">=", 80.0),
    ("natural_sft", "mean_intervened", "<=", 40.0),
    ("natural_sft", "avg_gap", ">=", 40.0),
    ("dpo", "min_original", ">=", 80.0),
    ("dpo", "mean_intervened", ">=", 70.0),
    ("dpo", "min_intervened", ">=", 55.0),
    ("dpo", "avg_gap", "<=", 15.0),
    ("dpo", "shift_largest_band", ">", "shift_smallest_band"),
    ("control", "mean_intervened", "<=", 45.0),
)


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_seed(recipe: str, seed: int, out: Path, sets: list[str], log=print) -> dict:
    """Data, training and evaluation of one seed; returns {"figures": {branch: figures}, "wall_s", "cpu_s"}.

    Raises:
        RuntimeError: a command failed (its exit code and command line).
    """
    from eval.summary import target_figures

    data = Path("data") / f"{Path(recipe).stem}_seed{seed}"
    runs = out / f"seed{seed}"
    overrides = [f"seed={seed}", *sets]
    set_args = [a for s in overrides for a in ("--set", s)]
    py = sys.executable
    commands = [
        [py, "-m", "data_builders", "build", recipe, "--out", str(data), "--quiet", *set_args],
        [py, "-m", "train", recipe, "--runs", str(runs), "--data", str(data), *set_args],
        [py, "-m", "eval", "watch", str(runs / Path(recipe).stem), "--once",
         "--set", f"thud.annotations={(data / 'test_clips.jsonl').resolve()}"],
    ]
    wall, cpu = time.monotonic(), _cpu_children()
    for cmd in commands:
        log("$ " + " ".join(cmd))
        rc = subprocess.call(cmd, env={**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")})
        if rc != 0:
            raise RuntimeError(f"seed {seed}: exit code {rc} from {' '.join(cmd)}")
    summary = json.loads((runs / Path(recipe).stem / "summary.json").read_text(encoding="utf-8"))
    return {"figures": {b: target_figures(m) for b, m in summary["branches"].items()},
            "wall_s": time.monotonic() - wall, "cpu_s": _cpu_children() - cpu}


def _check(value, op: str, target) -> bool | None:
    if value is None or target is None:
        return None
    return {">=": value >= target, "<=": value <= target, ">": value > target}[op]


def table(per_seed: dict[int, dict]) -> list[str]:
    """Lines of the result table: figure, target, one value per seed, mean ± sd, and whether each seed meets it."""
    seeds = sorted(per_seed)
    lines = [f"{'branch':12} {'figure':20} {'target':>24} " + " ".join(f"{'seed ' + str(s):>9}" for s in seeds)
             + f" {'mean ± sd':>14}  met"]
    for branch, fig, op, target in TARGETS:
        vals = [per_seed[s]["figures"].get(branch, {}).get(fig) for s in seeds]
        refs = [target if isinstance(target, float) else per_seed[s]["figures"].get(branch, {}).get(target)
                for s in seeds]
        met = [_check(v, op, r) for v, r in zip(vals, refs)]
        got = [v for v in vals if v is not None]
        mean = statistics.fmean(got) if got else None
        sd = statistics.stdev(got) if len(got) > 1 else 0.0
        shown = f"{op} {target}" if isinstance(target, float) else f"{op} {target}"
        lines.append(f"{branch:12} {fig:20} {shown:>24} "
                     + " ".join(f"{v:9.1f}" if v is not None else f"{'n/a':>9}" for v in vals)
                     + (f" {mean:7.1f} ± {sd:4.1f}" if mean is not None else f" {'n/a':>14}")
                     + f"  {sum(bool(m) for m in met)}/{len(met)}")
    lines.append(f"{'time':12} {'wall / cpu (min)':20} {'<= 15 (wall, 2 cores)':>24} "
                 + " ".join(f"{per_seed[s]['wall_s'] / 60:4.1f}/{per_seed[s]['cpu_s'] / 60:4.1f}" for s in seeds))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the seeds, print the table, write ``<out>/bench.json``; exit 0 when every command ran (whether the
    targets were met is in the table, not the exit code)."""
    p = argparse.ArgumentParser(prog="python -m train.clever_hans_bench", description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/clever_hans.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/clever_hans_bench", help="parent of the per-seed run folders")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="extra recipe overrides for every seed")
    p.add_argument("--report", action="store_true",
                   help="run nothing: print the table of seeds already benchmarked under --out (seeds run by "
                        "separate invocations, e.g. in parallel)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_seed = {}
    try:
        for seed in args.seeds:
            done = out / f"seed{seed}" / "result.json"
            if args.report:
                if not done.is_file():
                    raise RuntimeError(f"seed {seed}: no {done}; run it first (without --report)")
                per_seed[seed] = json.loads(done.read_text(encoding="utf-8"))
                continue
            per_seed[seed] = run_seed(args.recipe, seed, out, args.sets)
            done.write_text(json.dumps(per_seed[seed], indent=1), encoding="utf-8")
            print("\n".join(table(per_seed)), flush=True)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(table(per_seed)))
    (out / "bench.json").write_text(json.dumps(per_seed, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
