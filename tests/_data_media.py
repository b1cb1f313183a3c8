"""Media fixtures of the data-builder tests, written with PyAV directly (not by ``synth``): other frame rates,
sizes, sample rates and channel layouts, clips without audio, and corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def tone_track(duration: float, sr: int, events: list[tuple[float, float]], channels: int, seed: int = 0) -> np.ndarray:
    """(channels, n) float32: faint noise plus a decaying tone burst per ``(time, frequency)`` event."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * sr))
    mono = 0.003 * rng.standard_normal(n)
    for t, f in events:
        k = int(round(t * sr))
        m = min(n - k, int(0.4 * sr))
        tt = np.arange(m) / sr
        mono[k:k + m] += (0.7 * np.sin(2 * np.pi * f * tt) * np.exp(-tt / 0.08)
                          + 0.2 * rng.standard_normal(m) * np.exp(-tt / 0.01))
    gains = [1.0, 0.6][:channels]
    return np.stack([g * mono for g in gains]).astype(np.float32)


def write_clip(path: Path, *, duration: float = 4.0, fps: int = 30, size: tuple[int, int] = (320, 240),
               sr: int | None = 48000, channels: int = 2, events: list[tuple[float, float]] = ((2.0, 440.0),),
               codec: str = "libx264", seed: int = 0, gop: int | None = None) -> Path:
    """Write an mp4 with a moving bar and (unless ``sr`` is None) an AAC track of tone bursts; ``gop``: frames
    between key frames (the encoder's default when None)."""
    import av

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if gop is not None:
            vs.codec_context.gop_size = gop
        aus = None
        if sr is not None:
            aus = out.add_stream("aac", rate=sr, layout="stereo" if channels == 2 else "mono")
        for k in range(int(round(duration * fps))):
            img = np.full((h, w, 3), 30, np.uint8)
            x = int((k * 7) % (w - 20))
            img[:, x:x + 20] = (200, 100 + (k % 100), 50)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        out.mux(vs.encode(None))
        if aus is not None:
            track = tone_track(duration, sr, list(events), channels, seed)
            for start in range(0, track.shape[1], 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(track[:, start:start + 1024]), format="fltp",
                                                layout="stereo" if channels == 2 else "mono")
                fr.sample_rate, fr.pts = sr, start
                out.mux(aus.encode(fr))
            out.mux(aus.encode(None))
    return path


def video_packets(path: Path) -> list[tuple[bytes, float, float]]:
    """(bytes, pts seconds, dts seconds) of every video packet: an independent view of the video stream."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [(bytes(p), float(p.pts * p.time_base), float(p.dts * p.time_base)) for p in c.demux(vs)
                if p.dts is not None]


def xcorr_lag(ref: np.ndarray, sig: np.ndarray, sr: int, max_lag: float) -> float:
    """Lag in seconds of ``sig`` behind ``ref`` (> 0 = delayed): the peak of the Pearson-style correlation over the
    overlap at each lag (scipy's FFT correlation; independent of data_builders.materialize.measure_offset)."""
    from scipy.signal import correlate

    n = min(ref.size, sig.size)
    a, b = ref[:n].astype(np.float64), sig[:n].astype(np.float64)
    full = correlate(b, a, mode="full", method="fft")  # index n-1 is lag 0; lag L pairs b[i+L] with a[i]
    lags = np.arange(-(n - 1), n)
    ca, cb = np.concatenate([[0], np.cumsum(a * a)]), np.concatenate([[0], np.cumsum(b * b)])
    # Energies of the overlapping parts: for lag L >= 0, a[0:n-L] and b[L:n]; for L < 0, a[-L:n] and b[0:n+L].
    ea = np.where(lags >= 0, ca[n - np.clip(lags, 0, None)], ca[n] - ca[np.clip(-lags, 0, None)])
    eb = np.where(lags >= 0, cb[n] - cb[np.clip(lags, 0, None)], cb[n + np.clip(lags, None, 0)])
    score = full / np.sqrt(ea * eb + 1e-12)
    keep = (np.abs(lags) <= int(max_lag * sr)) & (n - np.abs(lags) >= sr // 4)
    return float(lags[keep][np.argmax(score[keep])] / sr)


def write_annotations(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


_LABELS = {
    "delayed": r"\bdelayed\b|\blate\b|\blags?\b",
    "early": r"\bearly\b|\bahead\b|\bprecedes\b",
    "silent": r"\bsilent\b|\bno sound\b|\bsilence\b|\bhear nothing\b",
    "mismatched": r"not match|mismatch",
    "synced": r"\bin sync\b|\bsynchronised\b|\blines up\b|\bfits the picture\b|\bmatches the picture in time\b",
}


def labels(text: str) -> set[str]:
    """The Thud labels an answer states, by keyword (the tests' own reader, independent of the builders)."""
    import re

    t = text.lower()
    found = {k for k, pat in _LABELS.items() if re.search(pat, t)}
    if re.search(r"\b(not|out of) (in )?sync", t):
        found.discard("synced")
    return found
