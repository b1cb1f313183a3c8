"""``python -m eval``: run | watch | metrics | suites. The only place eval errors become exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from recipes.cli import add_root_argument, finite_arg, guarded


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval", description="Harken evaluation: checkpoints on the "
                                "Thud diagnostic and the spectrogram benchmark")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="evaluate one checkpoint: results.json + report.md (+ plots)")
    r.add_argument("--checkpoint", required=True, help="checkpoint folder, backbone folder or tiny name")
    r.add_argument("--suites", default=None, help="comma list (default: the recipe's eval section)")
    r.add_argument("--out", default=None, help="output folder (default CHECKPOINT/eval, or ROOT/eval_out/NAME)")
    r.add_argument("--data", default=None, help="built data folder with test_clips.jsonl (default: the folder the "
                   "checkpoint's run was trained on, else ROOT/data/RECIPE)")
    add_root_argument(r)
    r.add_argument("--recipe", default=None, help="recipe for media settings and suites when the checkpoint has none")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="SUITE.KEY=VALUE",
                   help="override a suite option (repeatable), e.g. thud.modes=[closed_set]")
    r.add_argument("--seed", type=int, default=None, help="default: the recipe's seed")
    w = sub.add_parser("watch", help="evaluate every checkpoint of runs/NAME as it appears, once each")
    w.add_argument("run_dir", help="run folder, e.g. runs/NAME")
    w.add_argument("--data", default=None, help="built data folder with test_clips.jsonl (default: the folder the "
                   "run was trained on, else ROOT/data/RECIPE)")
    add_root_argument(w)
    w.add_argument("--once", action="store_true", help="evaluate what is there now and exit")
    w.add_argument("--suites", default=None, help="comma list (default: the recipe's eval section)")
    w.add_argument("--set", dest="sets", action="append", default=[], metavar="SUITE.KEY=VALUE",
                   help="override a suite option (repeatable), e.g. thud.limit=8")
    w.add_argument("--interval", type=finite_arg, default=30.0, help="seconds between scans")
    w.add_argument("--timeout", type=finite_arg, default=None, help="stop waiting after this many seconds")
    w.add_argument("--no-base", action="store_true", help="do not evaluate the base backbone as step 0")
    m = sub.add_parser("metrics", help="print a suite's metrics from a predictions JSONL, as JSON")
    m.add_argument("suite", choices=["thud"])
    m.add_argument("predictions", help="a predictions JSONL, e.g. CHECKPOINT/eval/thud/predictions_closed_set.jsonl")
    m.add_argument("--bands", default=None, help="|offset| band edges in seconds, e.g. 0.5,1,2")
    sub.add_parser("suites", help="list registered suites")
    lb = sub.add_parser("label", help="label free-form answers ({\"text\": ...} per line) with the parser or a judge")
    lb.add_argument("suite", choices=["thud"])
    lb.add_argument("answers")
    lb.add_argument("--out", default=None, help="write the labelled JSONL here (default: standard output)")
    lb.add_argument("--recipe", default=None, help="use this recipe's thud judge block (and its credential variable)")
    lb.add_argument("--judge-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    lb.add_argument("--judge-model", default=None, help="the model name the server knows")
    lb.add_argument("--judge-path", default=None, help="a local transformers causal LM folder as the judge")
    cp = sub.add_parser("compare", help="one Table-2-shaped table (Markdown, CSV, plot) across runs or checkpoints")
    cp.add_argument("runs", nargs="+", help="run folders (their last checkpoint), checkpoint or eval folders, or "
                                            "results.json files; the first is the reference row")
    cp.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    cp.add_argument("--mode", default="closed_set", choices=["closed_set", "free_form"], help="Thud mode to tabulate")
    return p


def band_edges(text: str) -> list[float]:
    """``--bands 0.5,1,2`` -> [0.5, 1.0, 2.0]. Raises ValueError unless finite, positive and increasing."""
    from recipes.cli import finite_float

    edges = [finite_float(x, "--bands") for x in text.split(",")]
    if any(e <= 0 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"--bands {text!r}: band edges are seconds > 0 in increasing order, e.g. 0.5,1,2")
    return edges


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; expected failures print one line and return 2."""
    args = _parser().parse_args(argv)
    from recipes.quiet import quiet_startup

    quiet_startup()
    return guarded(lambda: _run(args), getattr(args, "root", None))


def _run(args: argparse.Namespace) -> int:
    if args.command == "metrics":
        from eval.thud.metrics import DEFAULT_BAND_EDGES, compute_metrics, read_predictions
        from recipes.io import dumps_json

        edges = band_edges(args.bands) if args.bands else DEFAULT_BAND_EDGES
        print(dumps_json(compute_metrics(read_predictions(args.predictions), edges), indent=1))
        return 0
    if args.command == "label":
        return _label(args)
    if args.command == "compare":
        from eval.compare import compare

        paths = compare(args.runs, args.out, mode=args.mode)
        print(paths["markdown"].read_text(encoding="utf-8"))
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
        return 0
    if args.command == "suites":
        from eval.suites import SUITES

        print("\n".join(sorted(SUITES)))
        return 0
    from eval.runner import check_suite_names, parse_sets

    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else None
    check_suite_names([*(suites or []), *parse_sets(args.sets)])
    if args.command == "run":
        from eval.checkpoint import checkpoint_recipe
        from eval.runner import evaluate_checkpoint, resolve_data, suite_plan
        from recipes.paths import check_name, project_root
        from recipes.schema import load_recipe

        ck = Path(args.checkpoint)
        recipe = (checkpoint_recipe(ck) if ck.is_dir() else None) or (load_recipe(args.recipe) if args.recipe
                                                                      else None)
        data = resolve_data(recipe, args.data, ck)
        if data is not None:
            print(f"[eval] data {data}", file=sys.stderr)
        plan = suite_plan(recipe, suites, args.sets, data_dir=data)
        if not plan:
            raise ValueError("no suites to run: pass --suites thud[,...] or a recipe with an eval section")
        out = Path(args.out) if args.out else (
            ck / "eval" if ck.is_dir() else project_root() / "eval_out" / check_name(ck.name, "checkpoint name"))
        res = evaluate_checkpoint(args.checkpoint, plan, out, recipe=recipe, seed=args.seed)
        if int(os.environ.get("RANK", "0")) != 0:  # data-parallel: process 0 reports
            return 0
        for name, r in res["suites"].items():
            print(f"{name}: {r.get('status')}" + (f" ({r['reason']})" if r.get("reason") else ""))
        print(f"wrote {out / 'results.json'} and {out / 'report.md'}")
        return 1 if any(r.get("status") == "error" for r in res["suites"].values()) else 0
    if args.command == "watch":
        from eval.runner import watch

        entries = watch(args.run_dir, suites=suites, sets=args.sets, once=args.once, interval_s=args.interval,
                        timeout_s=args.timeout, include_base=not args.no_base, data=args.data)
        if not entries:
            raise ValueError(f"{args.run_dir}: no checkpoint to evaluate and no recipe named "
                             f"{Path(args.run_dir).name!r} (train first, or pass the run folder of a recipe)")
        print(f"evaluated {len(entries)} checkpoint(s); wrote {Path(args.run_dir) / 'report.md'}")
        return 1 if any(r.get("status") == "error" for _, e in entries for r in e["suites"].values()) else 0
    return 0


def _label(args) -> int:
    import json

    from eval.thud.judge import make_judge
    from eval.thud.label import judge_config, label_answers, read_answers, summarise
    from eval.thud.prompts import FREE_FORM_PROMPT
    from recipes.schema import load_recipe

    rows = read_answers(args.answers)
    config = judge_config(load_recipe(args.recipe) if args.recipe else None, args.judge_url, args.judge_model,
                          args.judge_path)
    judge = make_judge(config, FREE_FORM_PROMPT) if config is not None else None
    labelled = label_answers(rows, judge, config.scope if config is not None else "all")
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labelled)
    if args.out:
        from recipes.io import write_text

        write_text(Path(args.out), text)
    else:
        sys.stdout.write(text)
    print(json.dumps(summarise(labelled)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
