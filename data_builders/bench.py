"""``make bench-data`` (``python -m data_builders.bench [--pairs N] [--clips K]``): Harken's pairs vs the naive way.
:func:`bench` gives the same comparison as rows for ``make bench``.

Harken's way: probe the K clips once, then write N preference pairs as rows of an HF dataset: paths plus
intervention specs; no media file is written (interventions are applied to the waveform when a sample loads).
The naive way (what moviepy-based pipelines do): materialise every intervened clip by re-encoding it (video and
audio) with moviepy. Both build the same N pairs (ctp/mute/swap mix). Prints both times, the ratio and the bytes
written. Not a test: the numbers depend on the machine. Synthetic clips are generated first (not timed).

Measured (2026-11-25, shared 2-core CPU box, defaults N=400 pairs from K=16 clips of 3-6 s, 168x140):
Harken 0.084 s and 0 media bytes (348 KB of dataset rows); naive 82.8 s and 21.5 MB of mp4; ratio 983x.
The naive cost grows with N (one re-encode per pair); Harken's is dominated by probing the K clips once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _bytes_under(path: Path, suffixes: tuple[str, ...] | None = None) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and (suffixes is None or p.suffix in suffixes))


MEDIA_SUFFIXES = (".mp4", ".wav", ".m4a", ".aac", ".mkv", ".webm", ".flac")


def harken_way(clips_dir: Path, out: Path, n_pairs: int, seed: int, sample_rate: int = 16000):
    """Probe clips and write ``n_pairs`` pairs as a dataset (paths + specs). Returns (seconds, pairs)."""
    from datasets import Dataset

    from data_builders.annotations import read_annotations
    from data_builders.build import probe_clip
    from data_builders.pairs import BuildInputs, Clip, build_pairs
    from recipes.data import ShiftSettings

    t0 = time.perf_counter()
    clips = []
    for a in read_annotations(clips_dir / "annotations.jsonl"):
        res = probe_clip(a.path.resolve(), sample_rate)
        if res.ok:
            clips.append(Clip(ann=a.record, video=str(a.path.resolve()), duration=res.duration))
    inputs = BuildInputs(clips=clips, shift=ShiftSettings(bands=[(0.5, 2.0)]), seed=seed)
    share = {"ctp": n_pairs - 2 * (n_pairs // 4), "mute": n_pairs // 4, "swap": n_pairs // 4}
    pairs = []
    for i, (src, n) in enumerate(share.items()):
        pairs += build_pairs(src, inputs, n, np.random.default_rng([seed, i]))
    Dataset.from_list([p.model_dump(mode="json") for p in pairs]).save_to_disk(str(out / "dpo"))
    return time.perf_counter() - t0, pairs


def naive_way(pairs, out: Path) -> float:
    """Re-encode one mp4 per pair with moviepy (video + intervened audio). Returns seconds."""
    from moviepy import AudioArrayClip, VideoFileClip

    from data_builders.interventions import intervened_audio

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for k, p in enumerate(pairs):
        clip = VideoFileClip(p.video)
        sr = 44100  # moviepy's default audio rate
        wave = intervened_audio(p.video, p.chosen_intervention, sr)
        audio = AudioArrayClip(np.stack([wave, wave], axis=1).astype(np.float64), fps=sr)
        clip.with_audio(audio).write_videofile(str(out / f"pair_{k:05d}.mp4"), codec="libx264", audio_codec="aac",
                                               logger=None)
        clip.close()
    return time.perf_counter() - t0


def bench(runs: int = 5, pairs: int = 400, clips: int = 16, naive_pairs: int = 8, seed: int = 0) -> list[dict]:
    """``make bench``'s rows: pairs per second each way and the ratio of their times per pair, ``runs`` times.

    Harken's way builds all ``pairs``; the naive way re-encodes ``naive_pairs`` of them, spread over the three kinds
    (its cost is per pair, and a minute per run would crowd out every other figure)."""
    import datasets

    from data_builders.synth import synthesize
    from train.bench import row

    datasets.disable_progress_bars()
    ours, naive = [], []
    with tempfile.TemporaryDirectory(prefix="harken-bench-data-") as tmp:
        root = Path(tmp)
        synthesize(root / "clips", clips=clips, seed=seed, test_fraction=0, progress=False)
        for k in range(runs):
            (root / f"harken{k}").mkdir()
            t, built = harken_way(root / "clips", root / f"harken{k}", pairs, seed)
            ours.append(t / len(built))
            some = built[:: max(1, len(built) // naive_pairs)][:naive_pairs]
            naive.append(naive_way(some, root / f"naive{k}") / len(some))
    return [row(f"data build, {pairs} pairs from {clips} clips", "pairs/s", [1 / t for t in ours]),
            row(f"moviepy re-encode, {naive_pairs} of those pairs", "pairs/s", [1 / t for t in naive]),
            row("moviepy / Harken time per pair", "x", [n / o for n, o in zip(naive, ours)])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_builders.bench", description=__doc__)
    parser.add_argument("--pairs", type=int, default=400, help="N pairs to build each way")
    parser.add_argument("--clips", type=int, default=16, help="K synthetic clips they come from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import datasets

    from data_builders.synth import synthesize

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        clips_dir = root / "clips"
        synthesize(clips_dir, clips=args.clips, seed=args.seed, test_fraction=0, progress=False)
        h_out, n_out = root / "harken", root / "naive"
        h_out.mkdir(parents=True, exist_ok=True)
        t_h, pairs = harken_way(clips_dir, h_out, args.pairs, args.seed)
        print(f"harken: {len(pairs)} pairs from {args.clips} clips in {t_h:.3f} s; "
              f"media bytes written {_bytes_under(h_out, MEDIA_SUFFIXES)}, dataset bytes {_bytes_under(h_out)}")
        t_n = naive_way(pairs, n_out)
        print(f"naive (moviepy re-encode): {len(pairs)} clips in {t_n:.1f} s; media bytes written "
              f"{_bytes_under(n_out, MEDIA_SUFFIXES)}")
        print(f"ratio (naive / harken time): {t_n / t_h:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
