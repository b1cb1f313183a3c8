"""Benchmark: encoding a batch's audio at its own length vs the feature extractor's 300 s maximum.

``python -m train.bench_audio [--runs 5]`` builds the tiny Qwen2.5-Omni processor offline, gives its feature
extractor the released config's 300 s maximum, and times :func:`train.inputs.encode` (audio padded to the batch's
longest clip) against the processor on its own (every waveform padded to 300 s) on four 4 s clips with video.
Prints median [min] milliseconds, the size of the audio features, and the ratios. Figures, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

RELEASED_SECONDS = 300  # chunk_length of the released Qwen2.5-Omni preprocessor config
CLIPS = 4  # clips in the batch


def measure(runs: int = 5) -> dict[str, tuple[list[float], float]]:
    """Seconds of ``runs`` encodings of the batch, at its own length and padded to 300 s, with the size of its audio
    features in MB (from a first, untimed call that also warms the processor up)."""
    from recipes.media import MediaSettings
    from train.backbones import build_tiny_backbone, load_backbone
    from train.bench import timed
    from train.inputs import chat_messages, encode, videos_kwargs

    media = MediaSettings(fps=2.0, max_frames=4, max_pixels=28 * 28 * 16, max_clip_seconds=4.0)
    with tempfile.TemporaryDirectory() as tmp:
        _, processor = load_backbone(str(build_tiny_backbone("tiny-qwen2.5-omni", Path(tmp) / "b")))
    fe = processor.feature_extractor
    fe.chunk_length, fe.n_samples = RELEASED_SECONDS, RELEASED_SECONDS * fe.sampling_rate
    fe.nb_max_frames = fe.n_samples // fe.hop_length
    rng = np.random.default_rng(0)
    texts = [processor.apply_chat_template(chat_messages("Is the sound in sync?", "Yes."), tokenize=False)] * CLIPS
    videos = [rng.integers(0, 255, (4, 112, 112, 3), dtype=np.uint8) for _ in range(CLIPS)]
    audios = [rng.uniform(-0.5, 0.5, int(media.max_clip_seconds * media.sample_rate)).astype(np.float32)
              for _ in range(CLIPS)]

    def own():
        return encode(processor, media, texts, videos, audios)

    def padded():
        return processor(text=texts, videos=videos, audio=audios, return_tensors="pt", padding=True,
                         audio_from_video_indices=list(range(CLIPS)), load_audio_from_video=True,
                         videos_kwargs=videos_kwargs(media), audio_kwargs={"sampling_rate": media.sample_rate})

    out = {}
    for name, fn in (("own length", own), ("padded to 300 s", padded)):
        features = fn()["input_features"]
        out[name] = (timed(fn, runs), features.numel() * features.element_size() / 1e6)
    return out


def bench(runs: int = 5) -> list[dict]:
    """``make bench``'s rows: encoding time at the clips' own length and padded to 300 s, and their ratio."""
    from train.bench import row

    (own, _), (padded, _) = measure(runs).values()
    return [row(f"encode {CLIPS} clips of 4 s, own length", "ms", [1000 * t for t in own]),
            row(f"encode {CLIPS} clips of 4 s, padded to 300 s", "ms", [1000 * t for t in padded]),
            row("padded / own-length encode time", "x", [p / o for p, o in zip(padded, own)])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.bench_audio", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    from recipes.quiet import quiet_startup

    quiet_startup()
    rows = {}
    for name, (times, mb) in measure(args.runs).items():
        rows[name] = (1000 * statistics.median(times), 1000 * min(times), mb)
        print(f"{name:16s} median {rows[name][0]:8.1f} ms [min {rows[name][1]:8.1f}]  audio features {mb:6.1f} MB")
    (a, _, ma), (b, _, mb) = rows["own length"], rows["padded to 300 s"]
    print(f"ratio (300 s / own length): time {b / a:.1f}x, feature memory {mb / ma:.1f}x "
          f"({CLIPS} clips of 4 s, median of {args.runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
