"""Where a library does the job, Harken calls it: the Qwen processors' own resize rule with each family's patch
factor, and scipy's Wilson interval."""

from __future__ import annotations

import numpy as np
import pytest

from _train_data import write_recipe
from recipes import MediaSettings, load_recipe
from recipes.media import backbone_patch_factor

STAGES = "stages:\n  sft: {kind: sft, data: {dataset: sft}, max_steps: 2, learning_rate: 1.0e-3}\n"


@pytest.mark.parametrize("backbone, factor", [("tiny-qwen2.5-omni", 28), ("tiny-qwen3-omni", 32),
                                              ("Qwen/Qwen3-Omni-30B-A3B-Instruct", 32), ("Qwen/Qwen2.5-Omni-7B", 28),
                                              ("tiny-qwen2.5-vl", 28), ("some/other-model", None)])
def test_patch_factor_follows_the_backbone_family(backbone, factor):
    assert backbone_patch_factor(backbone) == factor


def test_recipe_takes_the_backbones_factor_unless_it_sets_one(tmp_path):
    assert load_recipe(write_recipe(tmp_path, "a", STAGES + "backbone: tiny-qwen3-omni\n")).media.patch_factor == 32
    assert load_recipe(write_recipe(tmp_path, "b", STAGES)).media.patch_factor == 28
    assert load_recipe(write_recipe(tmp_path, "c", STAGES), ["backbone=tiny-qwen3-omni"]).media.patch_factor == 32
    pinned = STAGES + "backbone: tiny-qwen3-omni\nmedia: {patch_factor: 28}\n"
    assert load_recipe(write_recipe(tmp_path, "d", pinned)).media.patch_factor == 28


def test_decoded_frames_are_not_resized_again_by_the_qwen3_processor(tiny_backbones):
    from transformers import AutoProcessor

    from train.inputs import videos_kwargs

    assert backbone_patch_factor(str(tiny_backbones["tiny-qwen3-omni"])) == 32  # read from its processor config
    media = MediaSettings(max_pixels=40000, patch_factor=32)
    h, w = media.frame_size(360, 640)
    assert h % 32 == 0 and w % 32 == 0 and h * w <= 40000 and (h, w) != MediaSettings(max_pixels=40000).frame_size(
        360, 640)
    processor = AutoProcessor.from_pretrained(tiny_backbones["tiny-qwen3-omni"])
    frames = np.zeros((2, h, w, 3), dtype=np.uint8)
    out = processor.video_processor(videos=[frames], return_tensors="pt", **videos_kwargs(media))
    t, gh, gw = out["video_grid_thw"][0].tolist()
    assert (gh * 16, gw * 16) == (h, w)  # the grid is exactly our frame: no second resize


def test_wilson_interval_is_scipys():
    from scipy.stats import binomtest

    from eval.spectrogram_baselines import wilson

    ci = binomtest(3, 7).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(3, 7) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert wilson(0, 0) == (0.0, 1.0)
    wide, narrow = wilson(30, 100, z=3.0), wilson(30, 100)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
