"""``python -m data_builders <command>``: the data commands of contracts.md.

Library code raises; only this entry point turns errors into exit codes (style.md §5).
"""

from __future__ import annotations

import argparse
import sys


def _synth(args: argparse.Namespace) -> int:
    from data_builders.synth import synthesize

    anns = synthesize(args.out, clips=args.clips, seed=args.seed, test_fraction=args.test_fraction)
    print(f"wrote {len(anns)} clips and {args.out}/annotations.jsonl")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_builders", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic impact clips and annotations.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.set_defaults(func=_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
