"""Collators: each row's own audio, frames decoded once per clip, prompt and padding masked from the loss."""

from __future__ import annotations

import pytest
import torch

import _train_data as td
from data_builders.interventions import ORIGINAL, Intervention
from recipes import MediaSettings
from train.backbones import load_backbone
from train.collators import DPOCollator, SFTCollator

MEDIA = MediaSettings(fps=1, max_frames=4, max_pixels=6272)


@pytest.fixture(scope="module")
def processor(tiny_backbones):
    return load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))[1]


@pytest.fixture()
def count_decodes(monkeypatch):
    import train.collators as collators

    calls = []
    real = collators.load_frames

    def counting(path, media, *span):
        calls.append(str(path))
        return real(path, media, *span)

    monkeypatch.setattr(collators, "load_frames", counting)
    return calls


def _text(processor, ids) -> str:
    return processor.tokenizer.decode(ids)


def test_sft_batch_masks_prompt_and_padding(processor, synth_dir, count_decodes):
    clip0 = td.sft_records(synth_dir)[:2]  # same clip: original ("in sync"), shifted ("delayed")
    long = clip0[1].model_copy(update={"answer": "The audio is delayed by about 1.5 seconds."})
    rows = [clip0[0].model_dump(mode="json"), long.model_dump(mode="json")]
    batch = SFTCollator(processor, MEDIA)(rows)

    assert count_decodes == [clip0[0].video], "frames of one clip are decoded once per call"
    assert batch["use_audio_in_video"] is True
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["input_features"].shape[0] == 2 and batch["video_grid_thw"].shape == (2, 3)
    # Each row hears its own track: the shifted one differs from the original.
    assert not torch.equal(batch["input_features"][0], batch["input_features"][1])
    for i, answer in enumerate([clip0[0].answer, long.answer]):
        kept = batch["labels"][i][batch["labels"][i] != -100]
        assert _text(processor, kept) == answer + "<|im_end|>\n"
    # Every video/audio placeholder and every padding position is out of the loss.
    media_ids = {processor.video_token_id, processor.audio_token_id}
    in_media = torch.isin(batch["input_ids"], torch.tensor(sorted(media_ids)))
    assert in_media.any() and (batch["labels"][in_media] == -100).all()
    pad = batch["attention_mask"] == 0
    assert pad[0].any(), "the shorter answer is padded"
    assert (batch["labels"][pad] == -100).all()


def test_dpo_batch_is_chosen_then_rejected_with_each_sides_audio(processor, synth_dir, count_decodes):
    pairs = td.dpo_records(synth_dir)[:2]
    # The second pair contrasts the same answer under different audio: chosen hears the shift, rejected the original.
    contrast = pairs[1].model_copy(update={"chosen": td.DELAYED, "rejected": td.DELAYED,
                                           "chosen_intervention": Intervention(kind="shift", offset=1.5),
                                           "rejected_intervention": ORIGINAL})
    batch = DPOCollator(processor, MEDIA)([pairs[0].model_dump(mode="json"), contrast.model_dump(mode="json")])

    assert len(count_decodes) == 1
    assert batch["input_ids"].shape[0] == 4 and batch["completion_mask"].shape == batch["input_ids"].shape
    assert "labels" not in batch
    got = [_text(processor, batch["input_ids"][i][batch["completion_mask"][i] == 1]) for i in range(4)]
    assert got == [a + "<|im_end|>\n" for a in (pairs[0].chosen, contrast.chosen, pairs[0].rejected,
                                                 contrast.rejected)]
    feats = batch["input_features"]
    assert torch.equal(feats[0], feats[2]), "pair 0: both sides hear the same shifted track"
    assert not torch.equal(feats[1], feats[3]), "pair 1: chosen and rejected hear different tracks"
    assert (batch["completion_mask"][batch["attention_mask"] == 0] == 0).all()


def test_audio_in_video_flag_follows_the_media_block(processor, synth_dir):
    rows = [td.sft_records(synth_dir)[0].model_dump(mode="json")]
    off = MEDIA.model_copy(update={"audio_in_video": False})
    assert SFTCollator(processor, off)(rows)["use_audio_in_video"] is False


def test_relative_video_paths_resolve_against_the_dataset(processor, synth_dir):
    sample = td.sft_records(synth_dir)[0]
    rel = sample.model_copy(update={"video": "videos/" + sample.video.rsplit("/", 1)[1]})
    batch = SFTCollator(processor, MEDIA, base_dir=synth_dir)([rel.model_dump(mode="json")])
    ref = SFTCollator(processor, MEDIA)([sample.model_dump(mode="json")])
    assert torch.equal(batch["pixel_values_videos"], ref["pixel_values_videos"])
