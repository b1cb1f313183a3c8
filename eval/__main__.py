"""``python -m eval``: run | watch | metrics | suites. The only place eval errors become exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval", description="Harken evaluation")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="evaluate one checkpoint: results.json + report.md (+ plots)")
    r.add_argument("--checkpoint", required=True, help="checkpoint folder, backbone folder or tiny name")
    r.add_argument("--suites", default=None, help="comma list (default: the recipe's eval section)")
    r.add_argument("--out", default=None, help="output folder (default CHECKPOINT/eval, or eval_out/NAME)")
    r.add_argument("--recipe", default=None, help="recipe for media settings and suites when the checkpoint has none")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="SUITE.KEY=VALUE")
    r.add_argument("--seed", type=int, default=None)
    w = sub.add_parser("watch", help="evaluate every checkpoint of runs/NAME as it appears, once each")
    w.add_argument("run_dir")
    w.add_argument("--once", action="store_true", help="evaluate what is there now and exit")
    w.add_argument("--suites", default=None)
    w.add_argument("--set", dest="sets", action="append", default=[], metavar="SUITE.KEY=VALUE")
    w.add_argument("--interval", type=float, default=30.0, help="seconds between scans")
    w.add_argument("--timeout", type=float, default=None, help="stop waiting after this many seconds")
    w.add_argument("--no-base", action="store_true", help="do not evaluate the base backbone as step 0")
    m = sub.add_parser("metrics", help="print a suite's metrics from a predictions JSONL, as JSON")
    m.add_argument("suite", choices=["thud"])
    m.add_argument("predictions")
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "metrics":
            from eval.thud.metrics import DEFAULT_BAND_EDGES, compute_metrics, read_predictions

            edges = [float(x) for x in args.bands.split(",")] if args.bands else DEFAULT_BAND_EDGES
            print(json.dumps(compute_metrics(read_predictions(args.predictions), edges), indent=1))
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
        suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else None
        if args.command == "run":
            from eval.checkpoint import checkpoint_recipe
            from eval.runner import evaluate_checkpoint, suite_plan
            from recipes.schema import load_recipe

            ck = Path(args.checkpoint)
            recipe = (checkpoint_recipe(ck) if ck.is_dir() else None) or (load_recipe(args.recipe) if args.recipe
                                                                          else None)
            plan = suite_plan(recipe, suites, args.sets)
            if not plan:
                raise ValueError("no suites to run: pass --suites thud[,...] or a recipe with an eval section")
            out = Path(args.out) if args.out else (ck / "eval" if ck.is_dir() else Path("eval_out") / ck.name)
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
                            timeout_s=args.timeout, include_base=not args.no_base)
            print(f"evaluated {len(entries)} checkpoint(s); wrote {Path(args.run_dir) / 'report.md'}")
            return 1 if any(r.get("status") == "error" for _, e in entries for r in e["suites"].values()) else 0
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _label(args) -> int:
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
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    else:
        sys.stdout.write(text)
    print(json.dumps(summarise(labelled)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
