"""``make bench`` (``python -m train.bench [--runs N] [--only NAME,...] [--demo] [--json OUT]``): Harken's
performance figures side by side in one run, min and median of N runs each, with their targets.

Sections, each a function ``bench(runs) -> list[dict]`` named in :data:`SECTIONS`:

- ``startup``: wall time of commands that load no model, each in a fresh process (target <= 2 s), next to what
  importing the training stack costs once;
- ``data``: preference pairs built per second, against re-encoding a sample of them with moviepy;
- ``fingerprint``: identifying a 15 GB checkpoint (target <= 1 s);
- ``audio``: encoding a batch's audio at its own length against padding it to 300 s;
- ``dpo``: a DPO step against an SFT step on the same pairs, and the reference model's share;
- ``scoring``: 5-option closed-set scoring against one forward of its prompt, and eval items per second;
- ``demo``: ``harken demo`` (what ``make demo`` runs) from an empty folder (target <= 60 s); a minute or more, so
  it runs only when asked (``--demo`` or ``--only demo``).

A row is ``{"name", "unit", "min", "median"}`` with an optional ``"target"`` such as ``"<= 1.5"`` or ``">= 100"``;
a target counts as met when the median is on its side. A section whose module is not in this tree prints one line
saying so and the others still run; one that raises is reported with its error and makes the exit code 1. Figures
depend on the machine and its load: they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
# name -> "module:function"; resolved only when the section runs, so listing them imports nothing heavy.
SECTIONS: dict[str, str] = {
    "startup": "train.bench:startup_bench",
    "data": "data_builders.bench:bench",
    "fingerprint": "eval.bench_fingerprint:bench",
    "audio": "train.bench_audio:bench",
    "dpo": "train.bench_dpo:bench",
    "scoring": "eval.bench_scoring:bench",
    "demo": "train.bench:demo_bench",
}
ON_REQUEST = ("demo",)  # sections left out unless named
STARTUP_TARGET = "<= 2"
DEMO_TARGET = "<= 60"
# Commands that load no model, as ``python -m MODULE ARGS``; "{predictions}" is a Thud predictions file the bench
# writes. ``clever_hans`` is validated with Thud options, which are checked against the suite's options model.
STARTUP: dict[str, tuple[str, ...]] = {
    "harken --help": ("recipes.harken", "--help"),
    "harken recipes": ("recipes.harken", "recipes"),
    "harken recipe show demo": ("recipes.harken", "recipe", "show", "demo"),
    "harken recipe show clever_hans": ("recipes.harken", "recipe", "show", "clever_hans"),
    "python -m eval metrics thud FILE": ("eval", "metrics", "thud", "{predictions}"),
    "python -m eval --help": ("eval", "--help"),
    "python -m train --help": ("train", "--help"),
    "python -m data_builders --help": ("data_builders", "--help"),
}
# What a command that loads a model imports once; none of it belongs in the commands above.
HEAVY = ("torch", "transformers", "trl", "peft", "deepspeed", "matplotlib", "librosa", "sentence_transformers")
# "<= 1.5", ">= 100", "< 2 s", "<= 1.5 (goal 1.35)": a comparison and a number; what follows is a note.
_TARGET = re.compile(r"\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\d.])")


def timed(fn: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter,
          warm: bool = False) -> list[float]:
    """Seconds of ``runs`` calls of ``fn`` by ``clock`` (wall by default; ``time.process_time`` for CPU), in
    order; ``warm`` first makes one untimed call (first-call allocations and lazy imports are not measured)."""
    if warm:
        fn()
    out = []
    for _ in range(runs):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def row(name: str, unit: str, values: Iterable[float], target: str | None = None) -> dict:
    """A benchmark row: the min and median of ``values`` (and the target, when there is one)."""
    values = list(values)
    if not values:
        raise ValueError(f"{name}: no measurement")
    out = {"name": name, "unit": unit, "min": min(values), "median": statistics.median(values)}
    if target is not None:
        out["target"] = target
    return out


def target_met(r: dict) -> bool | None:
    """Whether row ``r``'s median meets its target (None: the row has no target).

    Raises:
        ValueError: a target that does not start with ``<=``, ``>=``, ``<`` or ``>`` and a number, naming the row.
    """
    target = r.get("target")
    if target is None:
        return None
    m = _TARGET.match(str(target))
    if m is None:
        raise ValueError(f"{r.get('name')}: target {target!r} does not start with '<= X', '>= X', '< X' or '> X'")
    op, bound, value = m.group(1), float(m.group(2)), float(r["median"])
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]


def _number(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if a >= 0.001 or a == 0 else f"{x:.2e}"


def check_row(r: dict, section: str = "") -> None:
    """Raise ValueError naming the section and field when ``r`` is not a benchmark row."""
    where = f"{section}: " if section else ""
    for key, kind in (("name", str), ("unit", str), ("min", (int, float)), ("median", (int, float))):
        if not isinstance(r.get(key), kind) or isinstance(r.get(key), bool):
            what = "number" if key in ("min", "median") else "string"
            raise ValueError(f"{where}row {r.get('name', r)!r}: {key!r} missing or not a {what}")
    if not (math.isfinite(r["min"]) and math.isfinite(r["median"])):
        raise ValueError(f"{where}row {r['name']!r}: min and median must be finite numbers")
    target_met(r)


def format_table(rows: list[dict]) -> str:
    """Rows (each with its ``section`` and ``runs``) as an aligned text table: runs, min, median, unit, target and
    whether it is met."""
    header = ("section", "figure", "runs", "min", "median", "unit", "target", "met")
    lines = [header]
    for r in rows:
        met = target_met(r)
        verdict = "" if met is None else ("yes" if met else "NO")
        lines.append((r.get("section", ""), r["name"], str(r.get("runs", "")), _number(r["min"]),
                      _number(r["median"]), r["unit"], r.get("target", ""), verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4}  # numbers
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     .rstrip() for line in lines)


@dataclass
class BenchRun:
    """What :func:`run_sections` gathered: rows (each with its ``section``), sections whose module is not in this
    tree, and sections that raised (section -> one-line reason)."""

    rows: list[dict] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _bench_function(module: str, func: str) -> Callable[[int], list[dict]] | None:
    """The section's function, or None when its module is not in this tree. A library the module imports that is
    missing raises: that is a broken install, not an absent benchmark."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise
    return getattr(found, func)


def run_sections(names: Iterable[str], runs: int | dict[str, int], sections: dict[str, str] = SECTIONS,
                 log: Callable[[str], None] = print) -> BenchRun:
    """Run the named sections, ``runs`` times each (or ``runs[name]`` times); each row gets its ``section`` and
    ``runs``. A section whose module is missing, or that raises, is recorded with its reason (and logged) and the
    others still run."""
    out = BenchRun()
    for name in names:
        module, func = sections[name].split(":")
        log(f"[bench] {name} ...")
        try:
            fn = _bench_function(module, func)
            if fn is None:
                out.unavailable[name] = f"not available: {module} is not in this tree"
                log(f"[bench] {name}: {out.unavailable[name]}")
                continue
            n = runs if isinstance(runs, int) else runs[name]
            got = fn(n)
            for r in got:
                check_row(r, name)
        except Exception as exc:  # noqa: BLE001 -- one broken bench must not hide the others' figures
            out.failed[name] = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
            log(f"[bench] {name}: {out.failed[name]}")
            continue
        out.rows += [{"section": name, "runs": n, **r} for r in got]
    return out


def summary(res: BenchRun) -> str:
    """The table, the sections without figures, and how many targets are met."""
    judged = [m for m in map(target_met, res.rows) if m is not None]
    lines = [format_table(res.rows)] if res.rows else []
    lines += [f"{name}: {why}" for name, why in {**res.unavailable, **res.failed}.items()]
    lines.append(f"a target is met when the median is on its side: {sum(judged)} of {len(judged)} met")
    return "\n".join(lines)


def subprocess_env() -> dict[str, str]:
    """This environment with the tree this file belongs to first on ``PYTHONPATH``: the commands a benchmark (or a
    test) starts run this checkout's code, whatever is installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def write_predictions(folder: Path) -> Path:
    """A small Thud predictions file (every dimension, original and intervened) for ``eval metrics thud``."""
    from recipes.io import write_jsonl

    rows = []
    for i, offset in enumerate((1.0, -1.0, 2.0)):
        sid = f"clip{i}"
        rows += [{"source_id": sid, "dimension": "temporal_sync", "condition": "original", "label": "synced"},
                 {"source_id": sid, "dimension": "temporal_sync", "condition": "shift", "offset": offset,
                  "label": "delayed"},
                 {"source_id": sid, "dimension": "audio_existence", "condition": "original", "label": "synced"},
                 {"source_id": sid, "dimension": "audio_existence", "condition": "mute", "label": "silent"},
                 {"source_id": sid, "dimension": "sound_consistency", "condition": "original", "label": "synced"},
                 {"source_id": sid, "dimension": "sound_consistency", "condition": "swap", "label": "synced"}]
    path = folder / "predictions_closed_set.jsonl"
    write_jsonl(path, rows)
    return path


def startup_command(name: str, predictions: Path) -> list[str]:
    """The argument list that runs start-up command ``name`` with this interpreter."""
    return [sys.executable, "-m", *(a.replace("{predictions}", str(predictions)) for a in STARTUP[name])]


def _run_quiet(argv: list[str], cwd: str | Path, **env: str) -> None:
    done = subprocess.run(argv, cwd=cwd, env={**subprocess_env(), **env}, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join(done.stderr.split()[-40:])
        raise RuntimeError(f"`{' '.join(argv[1:])}` exited with {done.returncode}: {tail}")


def startup_bench(runs: int = 5) -> list[dict]:
    """Wall time of each :data:`STARTUP` command in a fresh process, and of importing the training stack once."""
    out = []
    with tempfile.TemporaryDirectory(prefix="harken-bench-") as tmp:
        predictions = write_predictions(Path(tmp))
        for name in STARTUP:
            argv = startup_command(name, predictions)
            out.append(row(name, "s", timed(lambda: _run_quiet(argv, Path(tmp)), runs),
                           STARTUP_TARGET))
    stack = [sys.executable, "-c", "import torch, transformers, trl, peft"]
    out.append(row("reference: importing torch, transformers, trl, peft", "s",
                   timed(lambda: _run_quiet(stack, REPO), runs)))
    return out


def demo_bench(runs: int = 1) -> list[dict]:
    """``harken demo`` (what ``make demo`` runs) from an empty folder each time: wall seconds."""
    def once():
        with tempfile.TemporaryDirectory(prefix="harken-bench-demo-") as tmp:
            _run_quiet([sys.executable, "-m", "recipes.harken", "demo", "--root", tmp], tmp,
                       WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))

    return [row("harken demo (= make demo), from an empty folder", "s", timed(once, runs), DEMO_TARGET)]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and print the table; 1 when a section failed (a missing one is only reported)."""
    parser = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (min and median are reported)")
    parser.add_argument("--only", default=None, help=f"comma list of sections: {', '.join(SECTIONS)}")
    parser.add_argument("--demo", action="store_true", help="also time `make demo` (about a minute per run)")
    parser.add_argument("--demo-runs", type=int, default=1, help="runs of the demo (default 1)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    # Before any section loads torch's OpenMP: idle worker threads then sleep instead of spinning, which on a busy
    # machine would count as CPU time of the step being measured.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.runs < 1 or args.demo_runs < 1:
        parser.error("--runs and --demo-runs must be at least 1")
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in SECTIONS]
        if unknown:
            parser.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    else:
        names = [n for n in SECTIONS if n not in ON_REQUEST]
    if args.demo and "demo" not in names:
        names.append("demo")
    from recipes.quiet import quiet_startup

    quiet_startup()
    # The demo has its own run count: one run is already a minute.
    res = run_sections(names, {n: args.demo_runs if n == "demo" else args.runs for n in names},
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    print(summary(res))
    if args.json:
        from recipes.io import write_json

        write_json(args.json, {"runs": args.runs, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                               "rows": [{**r, "met": target_met(r)} for r in res.rows],
                               "unavailable": res.unavailable, "failed": res.failed})
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
