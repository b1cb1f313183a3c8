"""Shared-prefix DPO: a pair packed as one sequence (prompt once, both answers) gives the log-probs and gradients of
TRL's two full sequences on both thinker families; batches whose sides hear different audio fall back to them; the
encoders run once per step for policy and reference unless a tower trains; a DPO stage trains packed through the
real trainer, and with the reference's log-probs precomputed.

Tolerances (float32): the packed run attends over a longer key axis with masked entries and its matmuls block
differently, so results differ from the unshared ones by rounding only: per-sequence log-probs (sums of ~12 token
log-probs of about -4 each) by a few 1e-6 (LOGP_ATOL leaves ~8x), gradients by up to ~1e-4 of each tensor's largest
entry (GRAD_RTOL leaves ~10x). A rotary position off by one on the answers moves log-probs by ~1e-3 and gradients by
~100 % of their size, far outside both.
"""

from __future__ import annotations

import math

import pytest
import torch

import _train_data as td
from data_builders.interventions import ORIGINAL
from recipes import MediaSettings
from recipes.schema import load_recipe
from train import shared_prefix
from train.backbones import load_backbone
from train.collators import DPOCollator

MEDIA = MediaSettings(fps=1, max_frames=4, max_pixels=6272)
LOGP_ATOL = 3e-5
GRAD_RTOL = 1e-3
FAMILIES = ["tiny-qwen2.5-omni", "tiny-qwen3-omni"]


@pytest.fixture(scope="module")
def rows(synth_dir) -> list[dict]:
    """Three pairs on two clips, each side hearing the same audio: a shifted clip, the original clip with a longer
    prompt (so prompts pad), and another clip's shifted pair with a longer chosen answer."""
    pairs = td.dpo_records(synth_dir)
    longer = pairs[1].model_copy(update={"prompt": "Watch this video and listen to its audio carefully. "
                                                   + td.PROMPT})
    wordy = pairs[2].model_copy(update={"chosen": "The audio is delayed by about 1.5 seconds."})
    return [p.model_dump(mode="json") for p in (pairs[0], longer, wordy)]


def _thinker(path):
    from trl.trainer.utils import add_fused_lm_head

    model, processor = load_backbone(str(path))
    add_fused_lm_head(model)  # TRL's head: per-token log-probs of the labelled positions, as its DPO loss reads them
    shared_prefix.install(model)
    return model, processor


def _logps(model, batch: dict) -> torch.Tensor:
    """Per-sequence answer log-probs (chosen rows, then rejected rows), computed the way TRL's DPO loss does."""
    batch = dict(batch)
    completion = batch.pop("completion_mask")
    labels = batch["input_ids"].masked_fill(completion == 0, -100)
    out = model(**batch, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -(completion.shape[1] - 1):].sum(1)


def _logps_and_grads(model, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    logps = _logps(model, batch)
    chosen, rejected = logps.chunk(2)
    # The sigmoid DPO loss against a fixed reference (log-probs 0): its gradient is the one the policy gets.
    loss = -torch.nn.functional.logsigmoid(0.1 * (chosen - rejected)).mean()
    loss.backward()
    return logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", FAMILIES)
def test_packed_pairs_give_the_unshared_logps_and_gradients(name, tiny_backbones, rows):
    model, processor = _thinker(tiny_backbones[name])
    unshared = DPOCollator(processor, MEDIA, shared_prefix=False)(rows)
    packed = DPOCollator(processor, MEDIA)(rows)

    assert shared_prefix.PACKED_IDS in packed and shared_prefix.PACKED_IDS not in unshared
    assert packed["use_audio_in_video"] is True
    assert packed["video_grid_thw"].shape[0] == 3 and unshared["video_grid_thw"].shape[0] == 6, \
        "the processor handles each pair's media once"
    prompt_lengths = packed[shared_prefix.SEGMENTS][:, 0].tolist()
    assert len(set(prompt_lengths)) == 3, "prompts of three lengths: the shorter ones are padded"

    logps, grads = _logps_and_grads(model, unshared)
    packed_logps, packed_grads = _logps_and_grads(model, packed)
    torch.testing.assert_close(packed_logps, logps, rtol=0, atol=LOGP_ATOL)
    assert packed_grads.keys() == grads.keys()
    assert any(n.startswith("model.audio_tower.") for n in grads) and any(n.startswith("model.visual.") for n in grads)
    for n, g in grads.items():  # every weight trains here, the encoders included: their gradients agree too
        assert (packed_grads[n] - g).abs().max() <= GRAD_RTOL * g.abs().max() + 1e-9, n


def test_a_batch_with_different_audio_per_side_falls_back(tiny_backbones, rows):
    model, processor = _thinker(tiny_backbones["tiny-qwen2.5-omni"])
    contrast = dict(rows[0], id="contrast", rejected_intervention=ORIGINAL.model_dump(mode="json"))
    mixed = DPOCollator(processor, MEDIA)([rows[1], contrast])

    assert shared_prefix.PACKED_IDS not in mixed and mixed["input_ids"].shape[0] == 4
    assert not torch.equal(mixed["input_features"][1], mixed["input_features"][3]), "each side hears its own audio"
    with torch.no_grad():
        alone = _logps(model, DPOCollator(processor, MEDIA)([rows[1]]))
        both = _logps(model, mixed)
    # The pair that shares its prompt scores the same in the fallback batch as packed on its own.
    torch.testing.assert_close(both[[0, 2]], alone, rtol=0, atol=LOGP_ATOL)


def _tower_calls(model) -> dict[str, int]:
    calls = {"audio_tower": 0, "visual": 0}
    for tower in calls:
        getattr(model.model, tower).register_forward_hook(lambda *_, t=tower: calls.__setitem__(t, calls[t] + 1))
    return calls


def test_frozen_encoders_run_once_for_policy_and_reference(tiny_backbones, rows):
    model, processor = _thinker(tiny_backbones["tiny-qwen2.5-omni"])
    batch = DPOCollator(processor, MEDIA)(rows)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("model.language_model.")
    calls = _tower_calls(model)
    with shared_prefix.encoders_once(model):
        policy = _logps(model, batch)
        with torch.no_grad():
            reference = _logps(model, batch)
    assert calls == {"audio_tower": 1, "visual": 1}
    torch.testing.assert_close(policy.detach(), reference)
    policy.sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("model.language_model."))

    # A trained tower keeps its gradients: nothing is shared then.
    model.zero_grad()
    for p in model.model.audio_tower.parameters():
        p.requires_grad = True
    with shared_prefix.encoders_once(model):
        _logps(model, batch).sum().backward()
        _logps(model, batch)
    assert calls == {"audio_tower": 3, "visual": 3}
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.audio_tower.parameters())


@pytest.fixture(scope="module")
def dpo_data(synth_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("shared_prefix_data")
    td.save(td.dpo_records(synth_dir), root / "dpo")
    return root


def _recipe(folder, backbone, extra: str = ""):
    return load_recipe(td.write_recipe(folder, "packed", f"""
backbone: {backbone}
media: {{fps: 1, max_frames: 4, max_pixels: 6272}}
stages:
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 2, learning_rate: 1.0e-3, batch_size: 2{extra}}}
"""))


def test_a_dpo_stage_trains_on_packed_pairs(tiny_backbones, dpo_data, tmp_path, monkeypatch):
    from train.callbacks import read_log
    from train.pipeline import run_recipe

    packed_runs = []
    real = shared_prefix.packed_forward
    monkeypatch.setattr(shared_prefix, "packed_forward",
                        lambda *a, **k: packed_runs.append(a[2].shape[0]) or real(*a, **k))
    recipe = _recipe(tmp_path, tiny_backbones["tiny-qwen2.5-omni"])
    run_recipe(recipe, runs_root=tmp_path / "runs", data_root=dpo_data, log=lambda _: None)

    assert packed_runs == [2] * 4, "2 steps x (policy + reference), each on 2 packed pairs"
    logs = [r for r in read_log(tmp_path / "runs/packed/dpo") if "loss" in r]
    assert len(logs) == 2 and abs(logs[0]["rewards/margins"]) < 1e-6 and abs(logs[0]["loss"] - math.log(2)) < 1e-5


def test_precomputed_reference_logps_equal_the_live_reference(tiny_backbones, dpo_data, tmp_path):
    from train.callbacks import read_log
    from train.dpo import build_trainer
    from train.runtime import StageContext

    backbone = tiny_backbones["tiny-qwen2.5-omni"]
    recipe = _recipe(tmp_path, backbone, ", precompute_ref_log_probs: true")
    ctx = StageContext(recipe=recipe, name="dpo", stage=recipe.stages["dpo"], out_dir=tmp_path / "dpo",
                       base=str(backbone), base_ref=str(backbone), data_root=dpo_data, is_last=True)
    trainer = build_trainer(ctx)
    data = trainer.train_dataset
    precomputed = torch.tensor(list(data["ref_chosen_logps"]) + list(data["ref_rejected_logps"]))

    # The live reference: the untouched thinker, TRL's unshared layout, every pair in one batch.
    model, processor = _thinker(backbone)
    rows = [{k: v for k, v in r.items() if not k.startswith("ref_")} for r in data]
    with torch.no_grad():
        live = _logps(model, DPOCollator(processor, MEDIA, shared_prefix=False)(rows))
    torch.testing.assert_close(precomputed, live, rtol=0, atol=LOGP_ATOL)

    trainer.train()
    logs = [r for r in read_log(ctx.out_dir) if "loss" in r]
    assert len(logs) == 2 and abs(logs[0]["rewards/margins"]) < 1e-5 and abs(logs[0]["loss"] - math.log(2)) < 1e-5


@pytest.mark.parametrize("dpo_extra, sft_extra, needle", [
    ("", ", shared_prefix: false", "stages.sft: shared_prefix: is a DPO setting"),
    (", precompute_ref_log_probs: true, trainer: {sync_ref_model: true}", "",
     "precompute_ref_log_probs: a reference synced during training"),
    (", trainer: {precompute_ref_log_probs: true}", "", "set it with stages.<name>.precompute_ref_log_probs"),
])
def test_the_switches_are_checked_at_load(tmp_path, dpo_extra, sft_extra, needle):
    from recipes import RecipeError

    path = td.write_recipe(tmp_path, "bad", f"""
stages:
  sft: {{kind: sft, data: {{dataset: sft}}, max_steps: 2, learning_rate: 1.0e-3{sft_extra}}}
  dpo: {{kind: dpo, data: {{dataset: dpo}}, max_steps: 2, learning_rate: 1.0e-3{dpo_extra}}}
""")
    with pytest.raises(RecipeError, match="bad.yaml") as err:
        load_recipe(path)
    assert needle in str(err.value)


def test_the_switches_reach_the_trainer(tmp_path):
    from train.dpo import dpo_config
    from train.runtime import StageContext

    recipe = _recipe(tmp_path, "tiny-qwen2.5-omni", ", shared_prefix: false, precompute_ref_log_probs: true")
    stage = recipe.stages["dpo"]
    ctx = StageContext(recipe=recipe, name="dpo", stage=stage, out_dir=tmp_path / "dpo", base="b", base_ref="b",
                       data_root=tmp_path, is_last=True)
    assert dpo_config(ctx).precompute_ref_log_probs is True and stage.shared_prefix is False


def test_a_thinker_without_block_masks_keeps_the_unshared_layout(tiny_backbones, rows, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig

    from train.dpo import OmniDPOTrainer

    model, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    assert shared_prefix.unsupported(model) is None
    model.config.get_text_config()._attn_implementation = "flash_attention_2"  # kernels that take no custom mask
    collator = DPOCollator(processor, MEDIA)
    with pytest.warns(UserWarning, match="shared-prefix DPO is off: attention implementation 'flash_attention_2'"):
        OmniDPOTrainer(model=model, args=DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[],
                                                   remove_unused_columns=False, max_length=None),
                       train_dataset=Dataset.from_list(rows), data_collator=collator, processing_class=processor)
    assert collator.shared_prefix is False and shared_prefix.PACKED_IDS not in collator(rows)
