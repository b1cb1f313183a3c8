"""``python -m data_builders materialize``: intervened clips as files, for inspection and for models that only take
files. Training and evaluation never need this: they apply interventions to the decoded waveform.

Each output mp4 holds the source's **video stream copied packet for packet** (a remux: same bytes, same timestamps,
same codec parameters: the pixels must be identical across conditions, so only the sound differs) and the
intervened audio
track encoded as AAC at the source's sample rate and channel layout (mono or stereo; more channels are downmixed to
stereo).

Timing: the intervention is applied to the source's decoded track with sample 0 at t = 0 of the container (the
demuxer drops the source's AAC priming by its edit list). The AAC encoder adds its own priming (1024 samples); the
mp4 muxer records it in an edit list, so a decoder again starts at t = 0 and the measured shift equals Δ.
:func:`measure_offset` checks that by cross-correlation and :func:`materialize` verifies every shifted file against
a 25 ms tolerance (``verify=True``).

File names are ``<source id>_<hash of the spec>.mp4``: nothing a model could see names the condition;
``index.jsonl`` maps each file to its source clip and intervention.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_builders.annotations import AnnotationError, is_swap_donor, iter_annotations, write_jsonl
from data_builders.interventions import ORIGINAL, Intervention, InterventionError, apply_intervention

SHIFT_TOLERANCE_S = 0.025  # a materialised shift measures within 25 ms of Δ
AAC_FRAME = 1024


@dataclass(frozen=True)
class NativeAudio:
    """A decoded track at its own rate and layout: ``samples`` is (channels, n) float32, sample 0 = t 0."""

    samples: np.ndarray
    sample_rate: int
    layout: str


def _layout_name(stream) -> str:
    name = stream.codec_context.layout.name if stream.codec_context.layout else "mono"
    channels = stream.codec_context.channels if hasattr(stream.codec_context, "channels") else None
    if name in ("mono", "stereo"):
        return name
    return "mono" if channels == 1 else "stereo"


def decode_native(path: str | Path, sample_rate: int | None = None, layout: str | None = None) -> NativeAudio:
    """Decode the first audio stream as planar float at its own rate/layout (or the given ones), aligned so that
    sample 0 is t = 0 of the container (a late-starting stream is padded). Raises the media loader's errors."""
    import av

    from data_builders.media import NoAudioStreamError, TruncatedMediaError, _container_duration, _open

    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise NoAudioStreamError(path, "has no audio stream")
        stream = container.streams.audio[0]
        rate = sample_rate or stream.codec_context.sample_rate
        lay = layout or _layout_name(stream)
        declared = _container_duration(container)
        resampler = av.AudioResampler(format="fltp", layout=lay, rate=rate)
        chunks, start = [], None
        try:
            for frame in container.decode(stream):
                if start is None:
                    start = float(frame.time) if frame.time is not None else 0.0
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(path, f"audio stream is corrupt ({exc})") from exc
    if not chunks:
        raise TruncatedMediaError(path, "audio stream has no decodable samples")
    audio = np.concatenate(chunks, axis=1).astype(np.float32)
    lead = int(round(max(start or 0.0, 0.0) * rate))
    if lead:
        audio = np.concatenate([np.zeros((audio.shape[0], lead), np.float32), audio], axis=1)
    if declared > 0:
        # Drop the source encoder's trailing padding, so re-encoding does not lengthen the clip at every pass.
        audio = audio[:, : int(round(declared * rate))]
    return NativeAudio(samples=audio, sample_rate=rate, layout=lay)


def intervene_native(audio: NativeAudio, spec: Intervention, donor: NativeAudio | None = None) -> np.ndarray:
    """Apply ``spec`` to every channel (the same rule as :func:`apply_intervention`, at the native rate)."""
    out = []
    for ch in range(audio.samples.shape[0]):
        d = None
        if donor is not None:
            d = donor.samples[min(ch, donor.samples.shape[0] - 1)]
        out.append(apply_intervention(audio.samples[ch], spec, audio.sample_rate, d))
    return np.stack(out)


def write_remuxed(src: str | Path, dst: str | Path, audio: np.ndarray, sample_rate: int, layout: str,
                  bit_rate: int = 128_000) -> None:
    """Write ``dst``: the video stream of ``src`` copied packet for packet, plus ``audio`` ((channels, n) float)
    encoded as AAC. Atomic (written to a temporary name, then renamed)."""
    import av

    from recipes.io import atomic_path

    with atomic_path(dst) as tmp, av.open(str(src)) as inp, av.open(str(tmp), mode="w", format="mp4") as out:
        ivs = inp.streams.video[0]
        ovs = out.add_stream_from_template(ivs)
        oas = out.add_stream("aac", rate=sample_rate, layout=layout)
        oas.bit_rate = bit_rate
        for pkt in inp.demux(ivs):
            if pkt.dts is None:  # the demuxer's final empty packet
                continue
            pkt.stream = ovs  # timestamps are rebased from the input stream's time base by mux()
            out.mux(pkt)
        samples = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).astype(np.float32))
        for start in range(0, samples.shape[1], AAC_FRAME):
            chunk = np.ascontiguousarray(samples[:, start:start + AAC_FRAME])
            fr = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            fr.sample_rate = sample_rate
            fr.pts = start
            out.mux(oas.encode(fr))
        out.mux(oas.encode(None))


def measure_offset(reference: np.ndarray, candidate: np.ndarray, sample_rate: int, max_lag_s: float) -> float:
    """Lag (seconds) of ``candidate`` relative to ``reference`` by normalised cross-correlation: > 0 when the
    candidate is delayed. Both mono; lags within ±``max_lag_s`` are searched."""
    n = min(reference.size, candidate.size)
    a = reference[:n].astype(np.float64)
    b = candidate[:n].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    max_lag = min(int(max_lag_s * sample_rate), n - 1)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([corr[: max_lag + 1], corr[size - max_lag:]])
    # Normalise by the overlap so long lags (little overlap) are not penalised.
    overlap = n - np.abs(lags)
    return float(lags[int(np.argmax(vals / np.maximum(overlap, 1)))] / sample_rate)


def spec_file_name(source_id: str, spec: Intervention) -> str:
    """``<id>_<8 hex>.mp4``: stable per (clip, spec) and silent about the condition."""
    digest = hashlib.sha1(f"{source_id}|{spec.model_dump_json()}".encode()).hexdigest()[:8]
    return f"{source_id}_{digest}.mp4"


def materialize(annotations: str | Path, out: str | Path, offsets: list[float] = (1.0, -2.0), seed: int = 0,
                mute: bool = True, swap: bool = True, verify: bool = True, progress: bool = True) -> list[dict]:
    """Write the original and every intervention of every clip of ``annotations`` under ``out/videos/``, and
    ``out/index.jsonl``. Clips or conditions that cannot be written (missing/corrupt file, no audio, a shift not
    shorter than the clip, no donor with a different audio event) are listed in ``out/skipped.jsonl``.

    Args:
        offsets: shift offsets in seconds (> 0 delays the audio).
        seed: picks each clip's swap donor among clips with a different audio event.
        verify: decode every shifted file and check the measured shift is within 25 ms of Δ (raises otherwise:
            that would be a bug, not bad input).
    Returns:
        the index rows.
    """
    import av
    from tqdm import tqdm

    from data_builders.media import MediaError, NoAudioStreamError, NoVideoStreamError, _open, load_audio

    out = Path(out)
    clips, skipped = [], []
    for item in iter_annotations(annotations):
        if isinstance(item, AnnotationError):
            skipped.append({"file": item.file, "line": item.line, "field": item.field, "reason": str(item)})
        else:
            clips.append(item)
    # Drop unreadable clips first, so none of them is picked as another clip's swap donor, and no clip fails half
    # way through its files (an audio-only mp4 has no video stream to copy).
    usable = []
    for clip in clips:
        try:
            with _open(clip.path) as container:
                if not container.streams.audio:
                    raise NoAudioStreamError(clip.path, "has no audio stream")
                if not container.streams.video:
                    raise NoVideoStreamError(clip.path, "has no video stream to copy")
            usable.append(clip)
        except MediaError as exc:
            skipped.append({"id": clip.record.id, "reason": exc.reason, "message": str(exc)})
    clips = usable
    rows: list[dict] = []
    for index, clip in enumerate(tqdm(clips, desc="materialize", disable=not progress)):
        cid = clip.record.id
        try:
            native = decode_native(clip.path)
        except MediaError as exc:
            skipped.append({"id": cid, "reason": exc.reason, "message": str(exc)})
            continue
        specs: list[tuple[Intervention, NativeAudio | None]] = [(ORIGINAL, None)]
        specs += [(Intervention(kind="shift", offset=float(o)), None) for o in offsets]
        if mute:
            specs.append((Intervention(kind="mute"), None))
        if swap:
            donors = [d for d in clips if is_swap_donor(d.record, clip.record)]
            if not donors:
                skipped.append({"id": cid, "kind": "swap", "reason": "no_donor",
                                "message": "no other clip has a different audio event"})
            else:
                d = donors[int(np.random.default_rng([seed, index]).integers(len(donors)))]
                try:
                    donor_audio = decode_native(d.path, native.sample_rate, native.layout)
                    specs.append((Intervention(kind="swap", donor=d.record.id, donor_video=str(d.path.resolve())),
                                  donor_audio))
                except MediaError as exc:
                    skipped.append({"id": cid, "kind": "swap", "reason": exc.reason, "message": str(exc)})
        for spec, donor in specs:
            try:
                track = intervene_native(native, spec, donor)
            except InterventionError as exc:
                skipped.append({"id": cid, "kind": spec.kind, "reason": "shift_too_long", "message": str(exc)})
                continue
            name = spec_file_name(cid, spec)
            dst = out / "videos" / name
            try:
                write_remuxed(clip.path, dst, track, native.sample_rate, native.layout)
            except av.error.FFmpegError as exc:  # the file went bad after the check: no output, no index row
                skipped.append({"id": cid, "kind": spec.kind, "reason": "corrupt_or_truncated",
                                "message": f"{clip.path}: {exc}"})
                continue
            if verify and spec.kind == "shift":
                # Against the expected track (the original shifted in memory), not the original itself: a shift
                # may push the event out of the clip, leaving nothing for a correlation with the original to find.
                sr = 16000
                ref, _ = load_audio(clip.path, sr)
                got, _ = load_audio(dst, sr)
                lag = measure_offset(apply_intervention(ref, spec, sr), got, sr, 0.5)
                if abs(lag) > SHIFT_TOLERANCE_S:
                    raise RuntimeError(f"{dst}: audio sits {lag:+.3f}s away from where a {spec.offset:+.3f}s shift "
                                       "puts it (> 25 ms); the AAC priming compensation is wrong for this file")
            iv = {"kind": spec.kind}
            if spec.kind == "shift":
                iv["offset"] = spec.offset
            if spec.kind == "swap":
                iv["donor"] = spec.donor
            rows.append({"file": f"videos/{name}", "source_id": cid, "intervention": iv})
    write_jsonl(out / "index.jsonl", rows)
    write_jsonl(out / "skipped.jsonl", skipped)
    return rows


def index_spec(row: dict, video_of: dict[str, str] | None = None) -> Intervention:
    """The :class:`Intervention` of an ``index.jsonl`` row (``video_of`` maps donor ids to files for swaps)."""
    iv = dict(row["intervention"])
    if iv["kind"] == "swap":
        iv["donor_video"] = (video_of or {}).get(iv["donor"], iv["donor"])
    return Intervention(**iv)


def read_index(out: str | Path) -> list[dict]:
    """Rows of ``out/index.jsonl``."""
    return [json.loads(line) for line in Path(out, "index.jsonl").read_text(encoding="utf-8").splitlines() if line]
