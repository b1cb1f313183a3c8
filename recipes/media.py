"""The one media-settings block, shared by data building, training and evaluation.

Every module that decodes frames or audio takes a :class:`MediaSettings`; none keeps its own default for fps,
frame cap, pixel budget or sample rate (style.md §2). A recipe's ``media:`` section is parsed into this model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Qwen2-VL/Omni vision: 14-pixel patches merged 2x2, so frame sides are multiples of 28 (the processor would round
# them anyway; doing it at decode time means it never resizes twice).
PATCH_MULTIPLE = 28


class MediaSettings(BaseModel):
    """How clips are decoded and shown to a model.

    Defaults follow Qwen2.5-Omni's published inference settings (2 fps video, 16 kHz mono audio interleaved with
    the video) with a small pixel budget that suits CPU tests; real recipes raise ``max_pixels``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fps: float = Field(2.0, gt=0, description="frames sampled per second of video")
    max_frames: int = Field(32, ge=2, description="frame cap; longer clips are sampled uniformly down to this")
    min_pixels: int = Field(PATCH_MULTIPLE * PATCH_MULTIPLE, ge=PATCH_MULTIPLE * PATCH_MULTIPLE)
    max_pixels: int = Field(64 * PATCH_MULTIPLE * PATCH_MULTIPLE, description="per-frame pixel budget (H*W)")
    sample_rate: int = Field(16000, description="audio sample rate in Hz; Whisper-style encoders expect 16000")
    audio_in_video: bool = Field(True, description="interleave the clip's audio with its frames (TMRoPE)")
    max_clip_seconds: float = Field(30.0, gt=0, description="clips are decoded up to this length")

    @model_validator(mode="after")
    def _check(self) -> "MediaSettings":
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels ({self.max_pixels}) is below min_pixels ({self.min_pixels})")
        return self

    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """Return (height, width) for a source frame: aspect kept, inside the pixel budget, sides multiples of 28.

        Same rule as Qwen2-VL's ``smart_resize`` so the processor does not resize again.
        """
        import math

        h = max(PATCH_MULTIPLE, round(height / PATCH_MULTIPLE) * PATCH_MULTIPLE)
        w = max(PATCH_MULTIPLE, round(width / PATCH_MULTIPLE) * PATCH_MULTIPLE)
        if h * w > self.max_pixels:
            beta = math.sqrt((height * width) / self.max_pixels)
            h = max(PATCH_MULTIPLE, math.floor(height / beta / PATCH_MULTIPLE) * PATCH_MULTIPLE)
            w = max(PATCH_MULTIPLE, math.floor(width / beta / PATCH_MULTIPLE) * PATCH_MULTIPLE)
        elif h * w < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h = math.ceil(height * beta / PATCH_MULTIPLE) * PATCH_MULTIPLE
            w = math.ceil(width * beta / PATCH_MULTIPLE) * PATCH_MULTIPLE
        return h, w
