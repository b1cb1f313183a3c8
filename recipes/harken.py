"""``harken``: the one command for building data, training, evaluating and inspecting recipes.

``harken build|data|train|eval|push ...`` hand their arguments to the module that does the work
(``python -m data_builders``, ``python -m train``, ``python -m eval``, ``python -m eval.model_card``), so a
subcommand added to one of those appears here without change. ``harken demo``, ``harken recipes`` and
``harken recipe show|schema`` are defined here. The modules stay runnable on their own (``python -m train ...``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from pathlib import Path

from recipes.cli import add_root_argument

# name -> (module whose ``main(argv)`` runs it, arguments put in front, one-line help). Modules are imported only
# when their command runs: ``harken recipes`` does not pay for torch.
DISPATCH: dict[str, tuple[str, tuple[str, ...], str]] = {
    "build": ("data_builders.__main__", ("build",), "build a recipe's SFT/DPO datasets, test split and manifest"),
    "data": ("data_builders.__main__", (), "other data commands: synth, materialize, export, spectrogram-mcq"),
    "train": ("train.__main__", (), "run a recipe's training stages (--dry-run: plan, sizes and GPU memory)"),
    "eval": ("eval.__main__", (), "evaluate checkpoints: run, watch, metrics, ... (harken eval --help)"),
    "push": ("eval.model_card", (), "write a model card with the evaluation tables; push a checkpoint to the hub"),
}
LOCAL = {"demo": "build, train and evaluate the demo recipe into the current directory (CPU, a few minutes)",
         "recipes": "list the recipes, one line each",
         "recipe": "show a resolved recipe (after extends and --set), or the schema of every key"}

def _dispatch(command: str, argv: list[str]) -> int:
    module, prefix, _ = DISPATCH[command]
    return int(importlib.import_module(module).main([*prefix, *argv]) or 0)


def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harken demo", description=LOCAL["demo"] + ": the same as `make demo`.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a field of recipes/demo.yaml for all three steps (repeatable)")
    add_root_argument(parser)
    args = parser.parse_args(argv)
    from recipes.paths import runs_dir

    sets = [x for s in args.overrides for x in ("--set", s)]
    root = ["--root", args.root] if args.root else []
    # Every step resolves data/, runs/ and .cache/ by the same rule (here, or --root), so the demo lands where the
    # user stands, wherever the repository is.
    for command, rest in (("build", ["demo", *sets, *root]), ("train", ["demo", *sets, *root]),
                          ("eval", ["watch", str(runs_dir(args.root) / "demo"), "--once", *root])):
        logging.getLogger(__name__).info("harken %s %s", command, " ".join(rest))
        code = _dispatch(command, rest)
        if code:
            return code
    return 0


def recipe_summary(path: Path) -> str:
    """One line for ``harken recipes``: the recipe's ``description`` when it has one, else the first line of its
    header comment that is not its run command."""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        description = (yaml.safe_load(text) or {}).get("description")
    except yaml.YAMLError:
        description = None
    if not description:
        header = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            body = line.lstrip("#").strip()
            if header and not body:
                break  # the first paragraph after the run line
            if body and not body.lower().startswith("run:"):
                header.append(body)
        description = " ".join(header)
    first = re.split(r"(?<=[.!?])\s", " ".join(str(description).split()), maxsplit=1)[0]
    return first


def _recipes(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harken recipes", description=LOCAL["recipes"])
    parser.add_argument("--dir", default=None, help="folder of recipe files (default: the recipes shipped with "
                                                    "Harken)")
    args = parser.parse_args(argv)
    from recipes.schema import RECIPES_DIR

    paths = sorted(Path(args.dir or RECIPES_DIR).glob("*.yaml"))
    width = max((len(p.stem) for p in paths), default=0)
    for p in paths:
        print(f"{p.stem:<{width}}  {recipe_summary(p)}")
    return 0


def _recipe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harken recipe", description=LOCAL["recipe"])
    sub = parser.add_subparsers(dest="what", required=True)
    show = sub.add_parser("show", help="print the resolved recipe as YAML (extends merged, --set applied, "
                                       "defaults filled in)")
    show.add_argument("recipe", help="recipes/NAME.yaml, NAME.yaml or NAME")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                      help="override a field (repeatable), e.g. --set stages.dpo.beta=0.2")
    schema = sub.add_parser("schema", help="every recipe key with its type, default and description")
    schema.add_argument("--markdown", action="store_true", help="the reference page (docs/recipes.md) instead of "
                                                                "a plain list")
    args = parser.parse_args(argv)
    if args.what == "show":
        import yaml

        from recipes.schema import load_recipe, recipe_dict

        print(yaml.safe_dump(recipe_dict(load_recipe(args.recipe, args.overrides)), sort_keys=False), end="")
        return 0
    from recipes.reference import markdown_reference, schema_rows

    if args.markdown:
        print(markdown_reference(), end="")
    else:
        for row in schema_rows():
            hf = f"  [Hugging Face: {row.hf_name}]" if row.hf_name else ""
            print(f"{row.key}: {row.type} = {row.default}  {row.description}{hf}".rstrip())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harken", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Teach audio-visual language models to listen, and measure whether they do.",
        epilog="Start with `harken demo`. `harken COMMAND --help` shows a command's own options.\n"
               "Quiet by default; HARKEN_VERBOSE=1 shows third-party warnings too.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, _, help_text) in DISPATCH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    for name, help_text in LOCAL.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``harken`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] not in {*DISPATCH, *LOCAL}:
        parser.parse_args(argv or ["--help"])  # prints help, or the "invalid choice" error, and exits
        return 2
    from recipes.quiet import quiet_startup

    quiet_startup()
    command, rest = argv[0], argv[1:]
    if command in DISPATCH:
        return _dispatch(command, rest)
    return {"demo": _demo, "recipes": _recipes, "recipe": _recipe}[command](rest)


if __name__ == "__main__":
    sys.exit(main())
