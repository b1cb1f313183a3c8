"""Decode a clip's frames and audio with PyAV: the one loader used by data building, training and evaluation.

Frames are sampled at the recipe's fps (uniformly thinned to ``max_frames``) and resized to its pixel budget;
audio is decoded to mono float32 at the recipe's sample rate, aligned so that sample 0 is t = 0 of the container
(an AAC track's encoder priming is dropped by the demuxer's edit list; a stream that starts late is padded).

Three failures are told apart, because a 10K build quarantines each with its own reason:
:class:`MediaMissingError` (no file), :class:`NoAudioStreamError` (a video without sound),
:class:`TruncatedMediaError` (unreadable, cut short or corrupt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipes.media import MediaSettings

# A stream whose decoded length falls this far short of what its container declares was cut off.
_TRUNCATION_TOLERANCE_S = 0.25


class MediaError(Exception):
    """Base class of the loader's errors; ``path`` names the file and ``reason`` is a short machine-readable tag."""

    reason = "media_error"

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class MediaMissingError(MediaError, FileNotFoundError):
    reason = "missing_file"


class NoAudioStreamError(MediaError):
    reason = "no_audio_stream"


class NoVideoStreamError(MediaError):
    reason = "no_video_stream"


class TruncatedMediaError(MediaError):
    reason = "corrupt_or_truncated"


@dataclass(frozen=True)
class DecodedClip:
    """A decoded clip. ``frames`` is (T, H, W, 3) uint8, ``frame_times`` their timestamps in seconds,
    ``audio`` mono float32 at ``sample_rate`` covering ``duration`` seconds."""

    frames: np.ndarray
    frame_times: np.ndarray
    audio: np.ndarray
    sample_rate: int
    duration: float
    fps: float


def _open(path: Path):
    import av

    if not path.is_file():
        raise MediaMissingError(path, "file does not exist; check the annotation's 'video' path")
    try:
        return av.open(str(path))
    except (av.error.InvalidDataError, av.error.EOFError, OSError, ValueError) as exc:
        raise TruncatedMediaError(path, f"cannot be opened as media ({exc}); re-download or drop this clip") from exc


def _container_duration(container) -> float:
    """Duration in seconds declared by the container (longest stream), 0.0 when unknown."""
    durations = []
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None:
            durations.append(float(stream.duration * stream.time_base))
    if container.duration is not None:
        durations.append(container.duration / 1_000_000)
    return max(durations, default=0.0)


def probe_duration(path: str | Path) -> float:
    """Return the clip's declared duration in seconds. Raises the loader's errors for missing/corrupt files."""
    path = Path(path)
    with _open(path) as container:
        return _container_duration(container)


def has_audio_stream(path: str | Path) -> bool:
    """True when the file has at least one audio stream."""
    path = Path(path)
    with _open(path) as container:
        return len(container.streams.audio) > 0


def sample_times(duration: float, media: MediaSettings) -> np.ndarray:
    """Timestamps at which frames are taken: every 1/fps from 0, thinned uniformly to ``max_frames``.

    At least two frames, since Qwen vision encoders group frames in temporal patches of two.
    """
    duration = min(duration, media.max_clip_seconds)
    n = max(2, int(np.floor(duration * media.fps + 1e-9)))
    times = np.arange(n) / media.fps
    if n > media.max_frames:
        times = times[np.round(np.linspace(0, n - 1, media.max_frames)).astype(int)]
    return times[times < max(duration, 1e-6)] if duration > 0 else times


class _Decoded:
    """A decoded frame and, once a sampled time takes it, its RGB array at the model's frame size."""

    __slots__ = ("av", "rgb")

    def __init__(self, frame):
        self.av, self.rgb = frame, None


def load_frames(path: str | Path, media: MediaSettings, start: float = 0.0,
                end: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Decode the frames shown to a model: returns (frames (T,H,W,3) uint8, times (T,), clip duration in s).

    Each sampled time takes the last decoded frame whose timestamp is at or before it. With ``start``/``end``
    (seconds; FineVideo segments) only that segment is sampled, as if it were a clip of its own (same fps and frame
    cap), after a seek: a segment deep into a long video does not decode what comes before it. ``times`` are then
    container times (from ``start`` on).
    """
    import av

    path = Path(path)
    if path.is_dir():
        return _load_frame_folder(path, media, start, end)
    with _open(path) as container:
        if not container.streams.video:
            raise TruncatedMediaError(path, "has no video stream")
        stream = container.streams.video[0]
        declared = _container_duration(container)
        if start > 0 or end is not None:
            seg_end = end if end is not None else declared
            if declared > 0:
                seg_end = min(seg_end, declared)
            if seg_end <= start:
                raise ValueError(f"{path}: segment [{start}, {end}) is empty or starts after the clip's end "
                                 f"({declared:.2f}s)")
            targets = start + sample_times(seg_end - start, media)
            if start > 0 and stream.time_base is not None:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            declared_end = min(seg_end, start + media.max_clip_seconds)
        else:
            targets = sample_times(declared if declared > 0 else media.max_clip_seconds, media)
            declared_end = min(declared, media.max_clip_seconds)
        height, width = media.frame_size(stream.codec_context.height, stream.codec_context.width)
        picked: list[np.ndarray] = []
        last_time = -1.0
        previous = None
        i = 0

        def as_rgb(frame) -> np.ndarray:
            # Converted only when a target takes it: most decoded frames (25 fps sampled at 2) are never shown, and
            # the conversion, not the decoding, was most of a clip's load time.
            if frame.rgb is None:
                frame.rgb = frame.av.to_ndarray(format="rgb24", width=width, height=height)
            return frame.rgb

        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else last_time + 1e-3
                last_time = t
                # Every target strictly before this frame's time is served by the previous frame.
                while i < len(targets) and targets[i] < t - 1e-6 and previous is not None:
                    picked.append(as_rgb(previous))
                    i += 1
                previous = _Decoded(frame)
                if i >= len(targets):
                    break
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(path, f"video stream is corrupt ({exc})") from exc
        if previous is None:
            raise TruncatedMediaError(path, "video stream has no decodable frame")
        if declared > 0 and i < len(targets) and last_time < declared_end - 1.0 / max(
            float(stream.average_rate or 25), 1.0
        ) - _TRUNCATION_TOLERANCE_S:
            raise TruncatedMediaError(
                path, f"video stream ends at {last_time:.2f}s but the container declares {declared:.2f}s"
            )
        while i < len(targets):
            picked.append(as_rgb(previous))
            i += 1
    return np.stack(picked), targets.astype(np.float64), float(declared)


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None,
               missing: str = "error") -> tuple[np.ndarray, float]:
    """Decode the first audio stream to mono float32 at ``sample_rate``; returns (waveform, clip duration in s).

    Sample 0 is t = 0 of the container: a stream that starts later is padded with silence, so event times in
    annotations index the waveform directly. ``missing="silence"``: a video without an audio stream, or a folder of
    frames, gives zeros for its duration (what such a clip sounds like); the default raises NoAudioStreamError.
    """
    import av

    path = Path(path)
    if missing == "silence" and (path.is_dir() or not has_audio_stream(path)):
        duration = frame_folder_duration(path) if path.is_dir() else probe_duration(path)
        wanted = duration if max_seconds is None else min(duration, max_seconds)
        return np.zeros(int(round(wanted * sample_rate)), np.float32), float(duration)
    with _open(path) as container:
        if not container.streams.audio:
            raise NoAudioStreamError(path, "has no audio stream; Thud and the pair builders need the clip's sound")
        stream = container.streams.audio[0]
        declared = _container_duration(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        start_time = None
        limit = None if max_seconds is None else int(round(max_seconds * sample_rate))
        got = 0
        try:
            for frame in container.decode(stream):
                if start_time is None:
                    start_time = float(frame.time) if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    got += arr.size
                if limit is not None and got >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(path, f"audio stream is corrupt ({exc})") from exc
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise TruncatedMediaError(path, "audio stream has no decodable samples")
    lead = int(round(max(start_time or 0.0, 0.0) * sample_rate))
    if lead:
        audio = np.concatenate([np.zeros(lead, np.float32), audio])
    decoded_s = audio.size / sample_rate
    wanted_s = declared if max_seconds is None else min(declared, max_seconds)
    if declared > 0 and decoded_s < wanted_s - _TRUNCATION_TOLERANCE_S:
        raise TruncatedMediaError(path, f"audio stream ends at {decoded_s:.2f}s but the container declares {declared:.2f}s")
    if wanted_s > 0:
        # Trim AAC's trailing padding frame, pad rounding gaps: exactly one sample per 1/sr of the clip.
        n = int(round(wanted_s * sample_rate))
        audio = audio[:n] if audio.size >= n else np.pad(audio, (0, n - audio.size))
    return audio, float(declared)


def load_clip(path: str | Path, media: MediaSettings) -> DecodedClip:
    """Decode frames and audio of one clip with the recipe's media settings. Raises the loader's errors."""
    frames, times, duration = load_frames(path, media)
    audio, _ = load_audio(path, media.sample_rate, max_seconds=min(duration, media.max_clip_seconds) or None)
    return DecodedClip(
        frames=frames, frame_times=times, audio=audio, sample_rate=media.sample_rate, duration=duration, fps=media.fps
    )


# ----------------------------------------------------------------------------------------------------------------
# folders of frames (LLaVA-Hound / ShareGPTVideo training videos ship as JPEG frame folders)

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Frame folders carry no timestamps. LLaVA-NeXT's DPO loader reads the ShareGPTVideo frame folders at 2 frames per
# second (``avg_fps = 2`` in llava/train/train_dpo.py), so frame i is at i / 2 s.
FRAME_FOLDER_FPS = 2.0


def frame_files(folder: str | Path) -> list[Path]:
    """The frame images of a folder, in name order (how the frames were numbered when extracted)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file())


def frame_folder_duration(folder: str | Path) -> float:
    """Seconds a frame folder covers at :data:`FRAME_FOLDER_FPS`. Raises TruncatedMediaError when it holds none."""
    n = len(frame_files(folder))
    if n == 0:
        raise TruncatedMediaError(folder, f"holds no frame images ({', '.join(FRAME_EXTENSIONS)})")
    return n / FRAME_FOLDER_FPS


def _load_frame_folder(folder: Path, media: MediaSettings, start: float = 0.0,
                       end: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`load_frames` for a folder of images: the same sampling, frame i standing at i / FRAME_FOLDER_FPS."""
    from PIL import Image, UnidentifiedImageError

    files = frame_files(folder)
    duration = frame_folder_duration(folder)
    seg_end = min(end if end is not None else duration, duration)
    if seg_end <= start:
        raise ValueError(f"{folder}: segment [{start}, {end}) is empty or starts after its end ({duration:.2f}s)")
    targets = start + sample_times(seg_end - start, media)
    picked, size = [], None
    for t in targets:
        f = files[min(int(np.floor(t * FRAME_FOLDER_FPS + 1e-9)), len(files) - 1)]
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if size is None:
                    size = media.frame_size(im.height, im.width)
                picked.append(np.asarray(im.resize((size[1], size[0]), Image.BILINEAR)))
        except (OSError, UnidentifiedImageError) as exc:
            raise TruncatedMediaError(f, f"is not a readable image ({exc})") from exc
    return np.stack(picked), targets.astype(np.float64), float(duration)


def probe_visual(path: str | Path) -> float:
    """Duration of a clip that only needs pictures (an external preference set's video: an mp4 with or without
    sound, or a frame folder). Raises the loader's errors for a missing, empty or unreadable one."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image, UnidentifiedImageError

        files = frame_files(path)
        duration = frame_folder_duration(path)
        try:
            with Image.open(files[0]) as im:
                im.verify()
        except (OSError, UnidentifiedImageError) as exc:
            raise TruncatedMediaError(files[0], f"is not a readable image ({exc})") from exc
        return duration
    with _open(path) as container:
        if not container.streams.video:
            raise TruncatedMediaError(path, "has no video stream")
        duration = _container_duration(container)
    if duration <= 0:
        raise TruncatedMediaError(path, "container declares no duration")
    return duration


# ----------------------------------------------------------------------------------------------------------------
# cutting a span out of a long video without re-encoding


def cut_span(src: str | Path, dst: str | Path, start: float, end: float, max_len: float | None = None) -> float:
    """Write ``[start, end)`` of ``src`` to ``dst`` by copying packets (no decoding, no re-encoding).

    A copy can only begin on a key frame, so the file starts at the last key frame at or before ``start``; its
    time 0 is that key frame. ``max_len`` caps the file's length counted from there. Returns that key frame's
    time in ``src`` (seconds), i.e. the offset to subtract from ``src`` times to get ``dst`` times. Written
    atomically.

    Raises:
        MediaError: ``src`` is missing or unreadable. ValueError: an empty span.
    """
    import av

    src, dst = Path(src), Path(dst)
    if end <= start:
        raise ValueError(f"{src}: span [{start}, {end}) is empty")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".tmp" + dst.suffix)
    with _open(src) as inp:
        if not inp.streams.video:
            raise TruncatedMediaError(src, "has no video stream")
        vs = inp.streams.video[0]
        streams = [vs, *inp.streams.audio[:1]]
        if start > 0:
            inp.seek(int(start / vs.time_base), stream=vs, backward=True)
        k0, stop = None, end
        with av.open(str(tmp), mode="w", format="mp4") as out:
            outs = {s.index: out.add_stream_from_template(s) for s in streams}
            pending = []  # audio packets demuxed before the first key frame fixed k0
            done = set()
            for pkt in inp.demux(streams):
                if pkt.dts is None or pkt.pts is None or pkt.stream.index in done:
                    continue
                t = float(pkt.pts * pkt.time_base)
                if pkt.stream is vs:
                    if k0 is None:
                        if not pkt.is_keyframe:
                            continue
                        k0 = t
                        stop = end if max_len is None else min(end, k0 + max_len)
                    if float(pkt.dts * pkt.time_base) >= stop:
                        done.add(vs.index)
                        continue
                elif k0 is not None and t >= stop:
                    done.add(pkt.stream.index)
                    continue
                if len(done) == len(streams):
                    break
                pending.append(pkt)
                if k0 is None:
                    continue
                for q in pending:
                    qt = float(q.pts * q.time_base)
                    if q.stream is not vs and qt < k0:
                        continue
                    shift = int(round(k0 / q.time_base))
                    q.pts -= shift
                    q.dts -= shift
                    q.stream = outs[q.stream.index]
                    out.mux(q)
                pending = []
    if k0 is None:
        tmp.unlink(missing_ok=True)
        raise TruncatedMediaError(src, f"has no key frame before {end:.2f}s to cut [{start:.2f}, {end:.2f}) from")
    tmp.replace(dst)
    return k0
