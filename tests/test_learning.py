"""Does audio reach the preference loss? A reduced "Clever Hans" check on the production training path.

DPO (real TRL trainer, LoRA on the tiny thinker, the Omni collator) on Mute pairs whose two sides differ only in
their audio: the chosen side is the muted clip with the answer "there is no sound", the rejected side the same clip
with its original track and the same answer. The only way to lower the loss is to make that answer likelier when
the track is silent than when it is not, so the statistic is the held-out preference

    S = mean over held-out clips of [log p(silent answer | muted clip) - log p(silent answer | original clip)]

after training minus before (the reference). Why it cannot pass by chance: when the audio does not reach the loss
(the rejected side decoded with the chosen side's audio, audio dropped before the thinker, a reference that is the
policy), the two sides of every pair are the same sequence with the same inputs: the DPO loss is ln 2 and its
gradient is zero up to float rounding, which Adam's normalisation turns into steps in random directions. Measured
(12 steps, 8 training and 4 held-out clips): with the audio contrast S rose by 7.21 and 2.77 nats (seeds 0 and 1);
the same run with the rejected side given the chosen side's audio moved S by 0.0007 nats. The thresholds sit far
from both: a gain above 1 nat for every seed (> 1000x the collapsed run), and under 0.1 nat for the collapsed run
(> 25x below the smallest gain).
"""

from __future__ import annotations

import numpy as np
import pytest

import _train_data as td
from data_builders.annotations import read_annotations
from data_builders.interventions import ORIGINAL, Intervention
from data_builders.records import PreferencePair

pytestmark = pytest.mark.slow

PROMPT = "Watch this video and listen to its audio carefully. Is there any sound in this video?"
SILENT = "There is no sound: the video is silent."
MUTE = Intervention(kind="mute")
MEDIA = "media: {fps: 1, max_frames: 4, max_pixels: 6272}\n"
MIN_GAIN = 1.0  # nats; see the module docstring
MAX_COLLAPSED = 0.1  # nats: identical sides give a zero gradient up to float rounding


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Twelve synthetic clips: eight to train on, four held out (their own seeds, never trained on)."""
    from data_builders.synth import synthesize

    out = tmp_path_factory.mktemp("learning_clips")
    synthesize(out, clips=12, seed=7, test_fraction=1 / 3, progress=False)
    anns = read_annotations(out / "annotations.jsonl")
    return [a for a in anns if a.record.split == "train"], [a for a in anns if a.record.split == "test"]


def _pairs(train, collapsed: bool) -> list[PreferencePair]:
    return [PreferencePair(id=f"mute-{a.record.id}", source="mute", source_id=a.record.id,
                           video=str(a.path.resolve()), prompt=PROMPT, chosen=SILENT, rejected=SILENT,
                           chosen_intervention=MUTE, rejected_intervention=MUTE if collapsed else ORIGINAL)
            for a in train]


def _preference(model, processor, media, held_out) -> float:
    """S before subtracting the reference: mean log p(SILENT | muted) - log p(SILENT | original)."""
    from data_builders.interventions import intervened_audio
    from data_builders.media import load_frames
    from eval.scoring import score_options

    diffs = []
    for a in held_out:
        frames, _, _ = load_frames(a.path, media)
        lp = {spec.kind: score_options(model, processor, media, PROMPT, [SILENT], frames=frames,
                                       audio=intervened_audio(a.path, spec, media.sample_rate)).logprob[0]
              for spec in (MUTE, ORIGINAL)}
        diffs.append(lp["mute"] - lp["original"])
    return float(np.mean(diffs))


def _gain(tiny_backbones, clips, tmp_path, seed: int, collapsed: bool) -> float:
    from eval.checkpoint import load_checkpoint
    from recipes.schema import load_recipe
    from train.pipeline import run_recipe

    train, held_out = clips
    data = td.save(_pairs(train, collapsed), tmp_path / "data" / "dpo")
    path = td.write_recipe(tmp_path, f"mute_{seed}_{int(collapsed)}", f"""
seed: {seed}
backbone: {tiny_backbones['tiny-qwen2.5-omni']}
{MEDIA}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
stages:
  dpo: {{kind: dpo, data: {{dataset: dpo, path: {data}}}, max_steps: 12, learning_rate: 2.0e-3, batch_size: 2,
        save_steps: 12, beta: 0.1, lr_scheduler: constant}}
""")
    recipe = load_recipe(path)
    [result] = run_recipe(recipe, runs_root=tmp_path / "runs", log=lambda _: None)
    before = load_checkpoint(recipe.backbone, recipe=recipe)
    after = load_checkpoint(result.checkpoint, recipe=recipe)
    return (_preference(after.model, after.processor, recipe.media, held_out)
            - _preference(before.model, before.processor, recipe.media, held_out))


def test_mute_preference_needs_audio_on_both_sides(tiny_backbones, clips, tmp_path):
    gains = [_gain(tiny_backbones, clips, tmp_path / f"s{seed}", seed, collapsed=False) for seed in (0, 1)]
    collapsed = _gain(tiny_backbones, clips, tmp_path / "c", 0, collapsed=True)
    print(f"gains with the audio contrast {gains}, with the rejected side given the chosen side's audio {collapsed}")
    assert abs(collapsed) < MAX_COLLAPSED, f"with identical sides S moved by {collapsed} nats: something else leaks"
    assert min(gains) > MIN_GAIN, f"DPO on audio-contrast Mute pairs moved S by only {gains} nats"
