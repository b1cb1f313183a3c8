"""``python -m train recipes/NAME.yaml [--set key.path=value ...]``: run a recipe's training stages.

Stages run in order into ``runs/NAME/<stage>/``; complete ones are skipped, an interrupted one resumes from its last
checkpoint. Several GPUs or nodes: start this module with ``accelerate launch`` (README, "Training").
Exit codes: 0 done, 2 bad recipe or setup (the message names the key to change).
"""

from __future__ import annotations

import argparse
import sys

from recipes.cli import add_root_argument, guarded


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load and validate the recipe, run its stages; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipes/NAME.yaml, NAME.yaml or NAME")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a recipe field (repeatable), e.g. --set stages.dpo.max_steps=10")
    parser.add_argument("--runs", default=None, help="parent folder of runs/NAME (default: ROOT/runs)")
    parser.add_argument("--data", default=None, help="folder with the built sft/ and dpo/ datasets "
                                                     "(default: ROOT/data/NAME)")
    add_root_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the stages, data counts, steps, tokens per "
                        "sample and estimated GPU memory per device; load no weights")
    parser.add_argument("--gpus", type=int, default=None, help="with --dry-run: GPUs the run would use (default: "
                        "WORLD_SIZE, else 1)")
    args = parser.parse_args(argv)
    from recipes.quiet import quiet_startup

    quiet_startup()

    def run() -> int:
        import os

        from recipes.schema import load_recipe

        recipe = load_recipe(args.recipe, args.overrides)
        if args.dry_run:
            from train.dry_run import dry_run

            print(dry_run(recipe, args.data, gpus=args.gpus or int(os.environ.get("WORLD_SIZE", "1"))))
            return 0
        from train.pipeline import run_recipe

        run_recipe(recipe, runs_root=args.runs, data_root=args.data)
        return 0

    return guarded(run, args.root)


if __name__ == "__main__":
    sys.exit(main())
