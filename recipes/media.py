"""The one media-settings block, shared by data building, training and evaluation.

Every module that decodes frames or audio takes a :class:`MediaSettings`; none keeps its own default for fps,
frame cap, pixel budget or sample rate. A recipe's ``media:`` section is parsed into this model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Frame sides are multiples of the vision encoder's patch size times its 2x2 token merge: 14 x 2 = 28 for Qwen2-VL,
# Qwen2.5-VL and Qwen2.5-Omni, 16 x 2 = 32 for Qwen3-Omni. The processor would round them anyway; doing it at decode
# time with the backbone's own factor means frames are never resized twice.
PATCH_MULTIPLE = 28
FAMILY_FACTORS = {"qwen2.5-omni": 28, "qwen2.5-vl": 28, "qwen2-vl": 28, "qwen3-omni": 32, "qwen3-vl": 32}


class MediaSettings(BaseModel):
    """How clips are decoded and shown to a model.

    Defaults follow Qwen2.5-Omni's published inference settings (2 fps video, 16 kHz mono audio interleaved with
    the video) with a small pixel budget that suits CPU tests; real recipes raise ``max_pixels``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fps: float = Field(2.0, gt=0, description="frames sampled per second of video")
    max_frames: int = Field(32, ge=2, description="frame cap; longer clips are sampled uniformly down to this")
    min_pixels: int = Field(PATCH_MULTIPLE * PATCH_MULTIPLE, ge=PATCH_MULTIPLE * PATCH_MULTIPLE,
                            description="smallest frame area (H*W); smaller frames are scaled up")
    max_pixels: int = Field(64 * PATCH_MULTIPLE * PATCH_MULTIPLE, description="per-frame pixel budget (H*W)")
    sample_rate: int = Field(16000, description="audio sample rate in Hz; Whisper-style encoders expect 16000")
    audio_in_video: bool = Field(True, description="interleave the clip's audio with its frames (TMRoPE)")
    max_clip_seconds: float = Field(30.0, gt=0, description="clips are decoded up to this length")
    patch_factor: int | None = Field(None, ge=1, description="frame sides are multiples of this: the vision "
                                     "encoder's patch size times its merge size (28 for Qwen2.5-Omni/VL, 32 for "
                                     "Qwen3-Omni); unset: from the recipe's backbone, else 28")

    @model_validator(mode="after")
    def _check(self) -> "MediaSettings":
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels ({self.max_pixels}) is below min_pixels ({self.min_pixels})")
        return self

    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """Return (height, width) for a source frame: aspect kept, inside the pixel budget, sides multiples of
        ``patch_factor``, by the Qwen vision processors' own ``smart_resize`` (so the processor does not resize
        again)."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        return smart_resize(height, width, factor=self.patch_factor or PATCH_MULTIPLE, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)


def backbone_patch_factor(backbone: str) -> int | None:
    """The frame-side multiple of a recipe's backbone: from a local folder's processor config (patch size x merge
    size), else from the family in its name (``tiny-qwen3-omni``, ``Qwen/Qwen3-Omni-30B-A3B-Instruct``, ...);
    None when neither says."""
    import json
    from pathlib import Path

    folder = Path(backbone)
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        f = folder / name
        if f.is_file():
            cfg = json.loads(f.read_text(encoding="utf-8"))
            if "patch_size" in cfg:
                return int(cfg["patch_size"]) * int(cfg.get("merge_size", 2))
    lowered = folder.name.lower().replace("_", "-")
    for family, factor in sorted(FAMILY_FACTORS.items(), key=lambda kv: -len(kv[0])):
        if family in lowered:
            return factor
    return None
