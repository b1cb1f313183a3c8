"""``python -m data_builders <command>``: the data commands of contracts.md.

Library code raises; only this entry point turns errors into exit codes (style.md §5).
"""

from __future__ import annotations

import argparse
import json
import sys


def _synth(args: argparse.Namespace) -> int:
    from data_builders.synth import synthesize

    anns = synthesize(args.out, clips=args.clips, seed=args.seed, test_fraction=args.test_fraction)
    print(f"wrote {len(anns)} clips and {args.out}/annotations.jsonl")
    return 0


def _build(args: argparse.Namespace) -> int:
    from data_builders.build import build

    res = build(args.recipe, out=args.out, overrides=args.set or (), progress=not args.quiet, force=args.force)
    if res.skipped:
        print(f"{res.out}: already built from the same inputs (build key {res.manifest['build_key']}); nothing to do")
        return 0
    m = res.manifest
    print(f"wrote {res.out}: sft {m['rows']['sft']} rows {m['counts']['train']['sft']}, dpo {m['rows']['dpo']} rows "
          f"{m['counts']['train']['dpo']}, {m['clips']['test']} test clips, "
          f"{m['quarantined']['total']} quarantined {m['quarantined']['by_reason']}")
    return 0


def _materialize(args: argparse.Namespace) -> int:
    from data_builders.materialize import materialize

    offsets = [float(x) for x in args.offsets.split(",") if x.strip()] if args.offsets else []
    rows = materialize(args.annotations, args.out, offsets=offsets, seed=args.seed, progress=not args.quiet)
    print(f"wrote {len(rows)} files and {args.out}/index.jsonl")
    return 0


def _export(args: argparse.Namespace) -> int:
    from data_builders.export import export_llamafactory

    res = export_llamafactory(args.dir, args.out, sample_rate=args.sample_rate, progress=not args.quiet)
    print(f"wrote {res.sft_rows} SFT and {res.dpo_rows} DPO rows, {res.audio_files} wav files to {args.out}")
    return 0


def _spectrogram_mcq(args: argparse.Namespace) -> int:
    from data_builders.spectrogram_mcq import build as build_spectrogram_mcq

    res = build_spectrogram_mcq(args.out, words=args.words, seed=args.seed, workers=args.workers,
                                test_fraction=args.test_fraction, progress=not args.quiet,
                                distractors=args.distractors)
    print(f"wrote {res.items} items to {res.out}/items.jsonl ({res.rendered} rendered, {res.skipped} already on "
          f"disk, {res.dropped_words} words left over after grouping into option sets of four)")
    manifest = json.loads((res.out / "manifest.json").read_text(encoding="utf-8"))
    print(f"distractors {args.distractors}: mean answer-to-distractor PED {manifest['mean_distractor_ped']}")
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

    p = sub.add_parser("build", help="build the SFT/DPO datasets, test split, manifest and quarantine of a recipe")
    p.add_argument("recipe", help="recipe name or file, e.g. recipes/demo.yaml")
    p.add_argument("--out", default=None, help="output folder (default data/<recipe name>)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a recipe value")
    p.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_build)

    p = sub.add_parser("materialize", help="write original + intervened mp4s (video stream copied) and index.jsonl")
    p.add_argument("--annotations", required=True, help="annotation JSONL (contracts.md)")
    p.add_argument("--out", required=True)
    p.add_argument("--offsets", default="1.0,-2.0",
                   help="comma-separated shift offsets in seconds (> 0 = delayed); write --offsets=-2.0,1.0 when "
                        "the first is negative")
    p.add_argument("--seed", type=int, default=0, help="picks each clip's swap donor")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_materialize)

    p = sub.add_parser("export", help="export a built folder to LLaMA-Factory sharegpt JSON with wav audio")
    p.add_argument("dir", help="built folder (data/<recipe>)")
    p.add_argument("--out", required=True)
    p.add_argument("--sample-rate", type=int, default=None, help="wav sample rate (default: the build's media)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_export)

    p = sub.add_parser("spectrogram-mcq", help="build the spectrogram multiple-choice benchmark (issue #6)")
    p.add_argument("--out", required=True)
    p.add_argument("--words", type=int, default=4068, help="lexicon words, most frequent first (spec: 4,068)")
    p.add_argument("--seed", type=int, default=0, help="option sets, answer positions and split")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of option sets in the test split")
    p.add_argument("--distractors", choices=["groups", "nearest"], default="groups",
                   help="groups: option sets of four close words, each the answer once; nearest: each answer's "
                        "distractors among its closest words by phonemic edit distance, as in 'Seeing isn't Hearing'")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_spectrogram_mcq)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
