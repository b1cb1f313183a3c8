"""``python -m data_builders <command>`` (``harken build`` / ``harken data <command>``): synthetic clips, dataset
builds, materialised interventions, exports and the spectrogram benchmark.

Library code raises; only this entry point turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys

from recipes.cli import add_root_argument, finite_arg, finite_float, guarded


def _synth(args: argparse.Namespace) -> int:
    from data_builders.synth import synthesize

    anns = synthesize(args.out, clips=args.clips, seed=args.seed, test_fraction=args.test_fraction,
                      world=args.world)
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

    offsets = [finite_float(x, "--offsets") for x in args.offsets.split(",") if x.strip()] if args.offsets else []
    rows = materialize(args.annotations, args.out, offsets=offsets, seed=args.seed, progress=not args.quiet)
    print(f"wrote {len(rows)} files and {args.out}/index.jsonl")
    return 0


def _export(args: argparse.Namespace) -> int:
    from data_builders.export import export_llamafactory

    res = export_llamafactory(args.dir, args.out, sample_rate=args.sample_rate, progress=not args.quiet)
    left_out = (f"; left out {res.skipped_pairs} pairs whose two sides hear different audio (a row has one track)"
                if res.skipped_pairs else "")
    print(f"wrote {res.sft_rows} SFT and {res.dpo_rows} DPO rows, {res.audio_files} wav files to {args.out}{left_out}")
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


def _inspect(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from data_builders.inspect import inspect_source

    media = shift = None
    if args.recipe:
        from recipes.schema import load_recipe

        rec = load_recipe(args.recipe)
        media, shift = rec.media, rec.data.shift
    reports = [inspect_source(s, events=args.events, video_folder=args.video_folder, media=media, shift=shift,
                              filtered=not args.all_clips) for s in args.sources]
    if args.json:
        import json

        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        print("\n".join(r.text() for r in reports))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_builders", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic impact clips and annotations.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=finite_arg, default=0.25)
    p.add_argument("--world", default="demo", help="clip timing: demo (3-6 s clips) or listen (5 s clips whose "
                                                   "impact, shifted or swapped in, stays audible)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("build", help="build the SFT/DPO datasets, test split, manifest and quarantine of a recipe")
    p.add_argument("recipe", help="recipe name or file, e.g. recipes/demo.yaml")
    p.add_argument("--out", default=None, help="output folder (default data/<recipe name>)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a recipe value")
    p.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_root_argument(p)
    p.set_defaults(func=_build)

    p = sub.add_parser("materialize", help="write original + intervened mp4s (video stream copied) and index.jsonl")
    p.add_argument("--annotations", required=True, help="annotation JSONL, one clip per line (docs/formats.md)")
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

    p = sub.add_parser("spectrogram-mcq", help="build the spectrogram multiple-choice benchmark")
    p.add_argument("--out", required=True)
    p.add_argument("--words", type=int, default=4068, help="lexicon words, most frequent first (4,068: the published benchmark)")
    p.add_argument("--seed", type=int, default=0, help="option sets, answer positions and split")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--test-fraction", type=finite_arg, default=0.2, help="share of option sets in the test split")
    p.add_argument("--distractors", choices=["groups", "nearest"], default="groups",
                   help="groups: option sets of four close words, each the answer once; nearest: each answer's "
                        "distractors among its closest words by phonemic edit distance, as in 'Seeing isn't Hearing'")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_spectrogram_mcq)

    p = sub.add_parser("inspect", help="read downloaded sources as a build would and report what it would take")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="FineVideo shard/folder/glob, Oops download folder, "
                   "preference JSONL or annotation JSONL")
    p.add_argument("--events", default=None, help="Oops: JSONL of per-clip event texts keyed by id")
    p.add_argument("--video-folder", default=None, help="preference JSONL: folder its `video` names are under")
    p.add_argument("--recipe", default=None, help="take media and shift settings from this recipe")
    p.add_argument("--all-clips", action="store_true", help="Oops: ignore the official *_filtered.txt lists")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("sound-world", help="write the offline labelled-sound world the diagnostic suites default to")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=2, help="clips per sound class")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sound_world)
    return parser


def _sound_world(args: argparse.Namespace) -> int:
    from data_builders.sound_world import build_world

    out = build_world(args.out, per_class=args.per_class, seed=args.seed)
    print(f"wrote {out}: labels.jsonl, label_sets.json, audio_mcq.jsonl and sounds/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; expected failures print one line and return 2."""
    from data_builders.media import MediaError

    args = build_parser().parse_args(argv)
    from recipes.quiet import quiet_startup

    quiet_startup()
    return guarded(lambda: args.func(args), getattr(args, "root", None), extra=(MediaError,))


if __name__ == "__main__":
    sys.exit(main())
