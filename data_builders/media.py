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


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> tuple[np.ndarray, float]:
    """Decode the first audio stream to mono float32 at ``sample_rate``; returns (waveform, clip duration in s).

    Sample 0 is t = 0 of the container: a stream that starts later is padded with silence, so event times in
    annotations index the waveform directly.
    """
    import av

    path = Path(path)
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
