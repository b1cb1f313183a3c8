"""Synthetic impact clips: the project's offline stand-in for Oops.

Each clip shows one object held still, then falling under gravity until it hits the ground at ``t_visual``; its
impact sound starts at ``t_audio = t_visual``. The object's class fixes both its look (shape, colour) and its
sound's timbre, so a track swapped in from a clip of another class is detectable by ear. Durations, event times,
positions and backgrounds vary with the seed; the same seed writes the same clips. A world (:data:`WORLDS`) sets
the ranges: ``demo`` (3-6 s clips) or ``listen`` (5 s clips with bigger objects, for the "Clever Hans" recipe).

Files: H.264 video (yuv420p) and AAC audio in mp4, the clip format the readers expect (docs/formats.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from data_builders.annotations import ClipAnnotation, write_jsonl

VIDEO_FPS = 25
WIDTH, HEIGHT = 168, 140  # multiples of 28, so Qwen vision never resizes them at native size
AUDIO_RATE = 22050  # deliberately not 16 kHz: the loader's resampling is exercised by every test that reads a clip
GROUND_Y = 120  # pixel row of the ground line
NOISE_FLOOR = 10 ** (-50 / 20)  # faint room noise, so an original track is never digital silence


@dataclass(frozen=True)
class ObjectClass:
    """A falling object: how it looks and how its impact sounds."""

    name: str
    shape: str  # circle | square | triangle | diamond
    color: tuple[int, int, int]
    visual_event: str
    audio_event: str
    partials: tuple[float, ...]  # Hz
    decay: float  # seconds to fall by 1/e
    noise: float  # share of broadband noise in the hit


OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("ball", "circle", (220, 40, 40), "a red rubber ball falls and hits the ground",
                "a dull low thud", (85.0, 170.0), 0.08, 0.25),
    ObjectClass("box", "square", (40, 80, 220), "a blue wooden box falls and lands on the ground",
                "a hollow wooden knock", (310.0, 620.0, 930.0), 0.05, 0.35),
    ObjectClass("bottle", "triangle", (40, 190, 80), "a green glass bottle falls and hits the ground",
                "a bright glassy clink that rings on", (2200.0, 3310.0, 4650.0), 0.35, 0.05),
    ObjectClass("can", "diamond", (230, 200, 40), "a yellow metal can falls and clangs on the ground",
                "a metallic clang", (620.0, 1370.0, 2150.0, 3010.0), 0.18, 0.15),
)
CLASS_BY_NAME = {c.name: c for c in OBJECT_CLASSES}


def _shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.3
    if shape == "triangle":  # apex up, base on the bottom edge of the bounding box
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {shape!r}")


def render_frame(t: float, *, cls: ObjectClass, x: float, radius: float, t_drop: float, t_visual: float,
                 background: np.ndarray) -> np.ndarray:
    """The frame at time ``t``: the object's bottom touches the ground exactly from ``t_visual`` on."""
    rest_y = GROUND_Y - radius  # centre height when the bottom touches the ground
    top_y = radius + 4
    if t < t_drop:
        cy = top_y
    elif t < t_visual:
        frac = (t - t_drop) / (t_visual - t_drop)
        cy = top_y + (rest_y - top_y) * frac * frac  # uniform acceleration from rest
        cy = min(cy, rest_y - 4.0)  # clearly above the ground until the impact instant, even after H.264
    else:
        cy = rest_y
    frame = background.copy()
    frame[GROUND_Y:, :] = (90, 70, 50)
    frame[_shape_mask(cls.shape, x, cy, radius)] = cls.color
    return frame


def impact_sound(cls: ObjectClass, rng: np.random.Generator, sr: int = AUDIO_RATE, seconds: float = 1.5) -> np.ndarray:
    """The class's impact: decaying partials plus a short noise burst, peak-normalised to 0.8."""
    t = np.arange(int(seconds * sr)) / sr
    env = np.exp(-t / cls.decay)
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / (k + 1) for k, f in enumerate(cls.partials))
    burst = rng.standard_normal(t.size) * np.exp(-t / 0.01)
    sig = (1 - cls.noise) * tone * env + cls.noise * burst
    # A 1 ms attack ramp: the onset stays sample-accurate without a click that smears across the spectrum.
    ramp = min(t.size, int(0.001 * sr))
    sig[:ramp] *= np.linspace(0, 1, ramp, endpoint=False)
    return (0.8 * sig / np.max(np.abs(sig))).astype(np.float32)


def _encode(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    import av

    from recipes.io import atomic_path

    with atomic_path(path) as tmp, av.open(str(tmp), mode="w") as out:
        # Bit-reproducible files need x264 single-threaded and without macroblock-tree rate control: its assembly
        # reads uninitialised memory (a clip's bytes changed with MALLOC_PERTURB_=1, and once in CI mid-suite);
        # with mbtree=0 (or asm=0) they don't.
        vs = out.add_stream("libx264", rate=VIDEO_FPS,
                            options={"crf": "20", "preset": "veryfast", "x264-params": "mbtree=0"})
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vs.codec_context.thread_count = 1
        aus = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        block = 1024
        for start in range(0, audio.size, block):
            chunk = audio[start:start + block]
            fr = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            fr.sample_rate = AUDIO_RATE
            fr.pts = start
            for pkt in aus.encode(fr):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)


@dataclass(frozen=True)
class World:
    """How clips of a synthetic world are timed. Classes, looks and sounds are the same in every world."""

    name: str
    duration: tuple[float, float]  # clip length range, seconds
    impact_from: float  # earliest impact, seconds (at least 0.3 s after the drop starts)
    impact_before_end: float  # the impact happens at least this long before the clip ends
    radius: tuple[float, float] = (8.0, 14.0)  # object size range, pixels of the 168x140 frame
    background: tuple[int, int] = (120, 220)  # range of each channel of the sky's colour at the top
    grey_background: bool = False  # one value for all three channels: the object is the only colour in the frame
    min_ring: float = 0.0  # seconds: every impact sound rings at least this long (its decay to 1/e)


WORLDS: dict[str, World] = {
    # Varied lengths; the impact anywhere from the drop to 1 s before the end.
    "demo": World("demo", (3.0, 6.0), 0.0, 1.0),
    # Clips that are all 5 s long with the impact between ~1.1 s and 3.2 s: a swapped-in track (another clip's
    # first 5 s) always carries its impact, and a shift of a second or two usually keeps the sound inside the clip.
    # The world of the "Clever Hans" recipe, where every question can be answered by listening.
    # Bigger objects on a grey sky, so that in the small frames a CPU model is shown the object stays several pixels
    # wide and is the only colour: a tiny random-weight vision tower did not learn to tell the objects apart on
    # skies of random colours.
    # Sounds that ring for at least 0.4 s, so each class's pitch fills a dozen audio frames of the thinker (a knock
    # decays in 0.05 s otherwise): a tiny random-weight audio tower learnt the onset and the silence but not which
    # sound it heard.
    "listen": World("listen", (5.0, 5.0), 1.1, 1.8, radius=(20.0, 26.0), background=(140, 200), grey_background=True,
                    min_ring=0.4),
}


def make_clip(index: int, seed: int, *, split: str | None = None,
              world: str = "demo") -> tuple[ClipAnnotation, list[np.ndarray], np.ndarray]:
    """Draw clip ``index`` of a seed in ``world`` (a key of :data:`WORLDS`): its annotation, its frames (25 fps) and
    its audio track (22.05 kHz). Each clip has its own generator ``[seed, index]``: a held-out clip's draws are
    never those of a training clip."""
    w = WORLDS[world]
    rng = np.random.default_rng([seed, index])
    cls = OBJECT_CLASSES[int(rng.integers(len(OBJECT_CLASSES)))]
    duration = float(np.round(rng.uniform(*w.duration), 2))
    fall = float(rng.uniform(0.5, 0.9))
    t_visual = float(np.round(rng.uniform(max(fall + 0.3, w.impact_from), duration - w.impact_before_end), 3))
    radius = float(rng.uniform(*w.radius))
    x = float(rng.uniform(radius + 5, WIDTH - radius - 5))
    top = np.array(rng.integers(*w.background, size=3), dtype=np.float32)  # three draws in every world
    if w.grey_background:
        top[:] = top[0]
    grad = np.linspace(1.0, 0.7, HEIGHT, dtype=np.float32)[:, None, None]
    background = np.broadcast_to(top * grad, (HEIGHT, WIDTH, 3)).astype(np.uint8)

    n_frames = int(round(duration * VIDEO_FPS))
    frames = [render_frame(k / VIDEO_FPS, cls=cls, x=x, radius=radius, t_drop=t_visual - fall, t_visual=t_visual,
                           background=background) for k in range(n_frames)]
    n_samples = int(round(duration * AUDIO_RATE))
    audio = (NOISE_FLOOR * rng.standard_normal(n_samples)).astype(np.float32)
    hit = impact_sound(replace(cls, decay=max(cls.decay, w.min_ring)), rng)
    onset = int(round(t_visual * AUDIO_RATE))
    end = min(n_samples, onset + hit.size)
    audio[onset:end] += hit[: end - onset]
    ann = ClipAnnotation(
        id=f"synth_{seed}_{index:05d}", video=f"videos/synth_{seed}_{index:05d}.mp4", source="synth",
        duration=duration, visual_event=cls.visual_event, t_visual=t_visual, audio_event=cls.audio_event,
        t_audio=t_visual, split=split, object_class=cls.name,
    )
    return ann, frames, audio


def synthesize(out_dir: str | Path, clips: int, seed: int = 0, test_fraction: float = 0.25,
               progress: bool = True, world: str = "demo") -> list[ClipAnnotation]:
    """Write ``clips`` synthetic clips of ``world`` and ``annotations.jsonl`` under ``out_dir``; returns the
    annotations.

    A clip already on disk is kept (re-running resumes); every ``1/test_fraction``-th clip is in the test split.
    Raises:
        KeyError: an unknown world.
    """
    if world not in WORLDS:
        raise KeyError(f"unknown synthetic world {world!r}; choose one of {sorted(WORLDS)}")
    from tqdm import tqdm

    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    every = max(1, round(1 / test_fraction)) if test_fraction > 0 else 0
    anns = []
    for i in tqdm(range(clips), desc="synth clips", disable=not progress):
        split = "test" if every and i % every == every - 1 else "train"
        ann, frames, audio = make_clip(i, seed, split=split, world=world)
        path = out_dir / ann.video
        if not path.exists():
            _encode(path, frames, audio)
        anns.append(ann)
    write_jsonl(out_dir / "annotations.jsonl", anns)
    return anns
