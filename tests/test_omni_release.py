"""Full Qwen-Omni release checkpoints (thinker + talker + vocoder in one folder) load as their thinker only, and
LoRA on them reaches the language model only."""

from __future__ import annotations

import json

import pytest
import torch

from _dataset_fixtures import write_omni_release
from train.backbones import TINY_BACKBONES, family_of, load_backbone


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_release_layout_loads_the_thinker(name, tiny_backbones, tmp_path):
    from peft import get_peft_model

    from recipes.training import LoraSettings
    from train.runtime import lora_config, module_tower

    release = write_omni_release(tiny_backbones[name], tmp_path / "release")
    config = json.loads((release / "config.json").read_text())
    assert "thinker_config" in config and "talker_config" in config and not config["model_type"].endswith("thinker")
    index = json.loads((release / "model.safetensors.index.json").read_text())["weight_map"]
    assert {k.split(".")[0] for k in index} == {"thinker", "talker", "token2wav" if "2.5" in name else "code2wav"}

    model, processor = load_backbone(str(release))
    reference, _ = load_backbone(str(tiny_backbones[name]))
    assert family_of(model.config) is TINY_BACKBONES[name] and type(model) is type(reference)
    got, want = model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert processor.tokenizer.get_vocab() == load_backbone(str(tiny_backbones[name]))[1].tokenizer.get_vocab()

    class _Recipe:
        lora = LoraSettings(dropout=0.0)

    peft_model = get_peft_model(model, lora_config(_Recipe(), model))
    towers = {module_tower(n.split(".lora_A.")[0].removeprefix("base_model.model."))
              for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    assert towers == {"language_model"}
