"""Speech and pictures of one word: eSpeak NG wav, librosa spectrogram image and waveform image.

As "Seeing isn't Hearing" renders its images: STFT ``n_fft=128``, ``hop_length=22``, magnitude in dB with a
70 dB dynamic range; a waveform image of the same audio; same size, axes and colour map for every item. Every number
used here is in :class:`RenderParams` and is written into every item's ``params``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recipes.io import atomic_path

INSTALL_HINT = "sudo apt-get install espeak-ng"


@dataclass(frozen=True)
class RenderParams:
    """Every rendering parameter; recorded with each item ."""

    sr: int = 22050              # eSpeak NG's native output rate; the wav is written as synthesised
    n_fft: int = 128             # the paper's
    hop_length: int = 22         # the paper's
    top_db: float = 70           # the paper's: 70 dB dynamic range
    window: str = "hann"         # librosa.stft default
    db_ref: str = "max"          # dB relative to the clip's peak, so every image spans [-top_db, 0]
    cmap: str = "magma"
    fig_inches: tuple[float, float] = (4.48, 3.36)
    dpi: int = 100               # 448 x 336 px: sides multiples of 28 (Qwen-VL patches), ~190 visual tokens
    axes_rect: tuple[float, float, float, float] = (0.2, 0.15, 0.77, 0.8)
    freq_axis: str = "linear"
    waveform_ylim: tuple[float, float] = (-1.0, 1.0)
    voice: str = "en-us"
    speed_wpm: int = 175         # eSpeak NG default speaking rate
    synthesiser: str = field(default="")

    def record(self) -> dict:
        """The JSON form written to items."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def espeak_binary() -> str:
    """Path of ``espeak-ng``. Raises RuntimeError with the install command when it is missing."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError(f"eSpeak NG (espeak-ng) is not installed; the spectrogram benchmark synthesises its "
                           f"speech with it. Install it with `{INSTALL_HINT}` (or `make install`).")
    return path


def espeak_version() -> str:
    """``espeak-ng --version`` first line (recorded in params so a build states its pronunciation source)."""
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[0].split("  Data at")[0]


def phonemize(words: list[str], voice: str = "en-us") -> list[str]:
    """eSpeak NG IPA of each word with phonemes separated by ``_`` (one batched call; one line per word)."""
    out = subprocess.run([espeak_binary(), "-q", "--ipa", "--sep=_", "-v", voice], input="\n".join(words) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    if len(out) != len(words):
        raise RuntimeError(f"espeak-ng returned {len(out)} transcriptions for {len(words)} words; a word with "
                           "punctuation or spaces splits lines: keep lexicon entries to single plain words")
    return out


def synthesise(word: str, path: Path, params: RenderParams) -> None:
    """Write ``word`` spoken by eSpeak NG to ``path`` (wav, ``params.sr``), atomically."""
    with atomic_path(path) as tmp:
        subprocess.run([espeak_binary(), "-v", params.voice, "-s", str(params.speed_wpm), "-w", str(tmp), word],
                       check=True, capture_output=True)


class Painter:
    """One matplotlib figure per process, reused for every image: identical size and axes by construction, and no
    per-image figure set-up (most of matplotlib's cost)."""

    def __init__(self, params: RenderParams):
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        self.p = params
        self.fig = Figure(figsize=params.fig_inches, dpi=params.dpi)
        self.ax = self.fig.add_axes(params.axes_rect)

    def _save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            self.fig.savefig(tmp, format="png", dpi=self.p.dpi)

    def spectrogram(self, y: np.ndarray, path: Path) -> None:
        """STFT magnitude in dB (ref = clip peak, floor ``-top_db``) as a fixed-scale image."""
        import librosa

        p = self.p
        mag = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, window=p.window))
        db = librosa.amplitude_to_db(mag, ref=np.max, top_db=p.top_db)
        ax = self.ax
        ax.clear()
        ax.imshow(db, origin="lower", aspect="auto", cmap=p.cmap, vmin=-p.top_db, vmax=0,
                  extent=(0, len(y) / p.sr, 0, p.sr / 2), interpolation="nearest")
        ax.set_xlabel("Time (s)")
        ax.set_ylabel("Frequency (Hz)")
        self._save(path)

    def waveform(self, y: np.ndarray, path: Path) -> None:
        """Amplitude against time, fixed y range, drawn in the colour map's mid colour."""
        import matplotlib

        p = self.p
        ax = self.ax
        ax.clear()
        t = np.arange(len(y)) / p.sr
        ax.plot(t, y, color=matplotlib.colormaps[p.cmap](0.5), linewidth=0.6)
        ax.set_xlim(0, len(y) / p.sr)
        ax.set_ylim(*p.waveform_ylim)
        ax.set_xlabel("Time (s)")
        ax.set_ylabel("Amplitude")
        self._save(path)


def stack_images(top: Path, bottom: Path, path: Path) -> None:
    """The spectrogram + waveform condition as one image (spectrogram above, waveform below): works with any
    processor that takes one image per prompt."""
    from PIL import Image

    a, b = Image.open(top).convert("RGB"), Image.open(bottom).convert("RGB")
    out = Image.new("RGB", (max(a.width, b.width), a.height + b.height), "white")
    out.paste(a, (0, 0))
    out.paste(b, (0, a.height))
    with atomic_path(path) as tmp:
        out.save(tmp, format="PNG")


_PAINTER: dict[RenderParams, Painter] = {}


def render_word(job: tuple[str, str, Path, RenderParams]) -> str:
    """Worker: synthesise and draw one word unless its files exist (resumable). ``job`` = (id, word, out, params).

    Returns the id. Files: audio/ID.wav, images/ID_spec.png, images/ID_wave.png, images/ID_both.png.
    """
    import soundfile as sf

    item_id, word, out, params = job
    wav = out / "audio" / f"{item_id}.wav"
    spec, wave, both = (out / "images" / f"{item_id}_{k}.png" for k in ("spec", "wave", "both"))
    if all(p.is_file() for p in (wav, spec, wave, both)):
        return item_id
    if not wav.is_file():
        synthesise(word, wav, params)
    y, sr = sf.read(wav, dtype="float32")
    if sr != params.sr:
        raise RuntimeError(f"{wav}: eSpeak NG wrote {sr} Hz, params say {params.sr}; set RenderParams.sr to {sr}")
    painter = _PAINTER.get(params)
    if painter is None:
        painter = _PAINTER[params] = Painter(params)
    painter.spectrogram(y, spec)
    painter.waveform(y, wave)
    stack_images(spec, wave, both)
    return item_id
